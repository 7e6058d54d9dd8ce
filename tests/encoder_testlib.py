"""Count the image encoder's runs, whatever runtime runs it (ONNX Runtime or PyTorch)."""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def encoder_runs(model=None):
    """Yields a list that receives the batch size (views included) of every ``EncoderPass``
    run inside the block. With ``model``, a direct PyTorch call of ``model.encoder`` outside an
    ``EncoderPass`` (a second pass the design forbids) is recorded too, as ``"direct"``."""
    from personlens.inference.encode import EncoderPass

    runs: list = []
    real = EncoderPass.encode
    inside = []

    def counting(self, *args, **kwargs):
        inside.append(1)
        try:
            out = real(self, *args, **kwargs)
        finally:
            inside.pop()
        runs.append(int(out.tokens.shape[0]))
        return out

    hook = None
    if model is not None:
        hook = model.encoder.register_forward_hook(lambda *a: None if inside else runs.append("direct"))
    EncoderPass.encode = EncoderPass.__call__ = counting
    try:
        yield runs
    finally:
        EncoderPass.encode = EncoderPass.__call__ = real
        if hook is not None:
            hook.remove()
