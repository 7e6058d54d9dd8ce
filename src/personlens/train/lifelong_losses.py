"""Losses of lifelong re-ID (issue 16), each on plain tensors so that tests can check them on
tiny inputs.

* ``logit_distillation`` (LwF, Li & Hoiem 2017): the new model's logits on the old domains'
  classifiers follow the old model's, KL at temperature T, scaled by T^2.
* ``relation_distillation`` (PTKP / KRKC style): the new model's batch similarity structure
  follows the old model's (row-wise KL of softmaxed cosine similarities).
* ``old_model_right`` (the rectification of LSTKC, Xu et al. AAAI 2024, in its simplest
  form): which crops the old model already places next to another crop of the same person.
  Distilling the others would teach the new model the old model's mistakes about the new
  persons, so the style distillation can be limited to these.
* ``cross_modal_alignment``: the k-th image attribute feature and the k-th text attribute
  feature of the same person match, contrasted against the batch (InfoNCE both ways; images of
  the same person are all positives).
* ``prototype_alignment``: the cross-domain attribute alignment. Each part feature of a new
  image is compared with the prototype memory (every earlier domain, every attribute group);
  its distribution over those prototypes must stay what the old model gave, so the attribute
  space the old domains were learned in does not drift, without any old image. With one
  global prototype per domain it is the "global" ablation.
* ``attribute_pull``: the other half of the cross-domain attribute alignment, in the retrieval
  embedding's space. The new domain's crops that state attribute a (their descriptions) are,
  on average, pulled towards the earlier domains' prototype of a: "a man in a red coat" keeps
  one place in the embedding whichever cameras taught it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["logit_distillation", "relation_distillation", "old_model_right", "cross_modal_alignment",
           "prototype_alignment", "attribute_pull"]


def logit_distillation(new: torch.Tensor, old: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    t = temperature
    return F.kl_div(F.log_softmax(new / t, -1), F.softmax(old / t, -1),
                    reduction="batchmean") * t * t


def _row_kl(new_logits: torch.Tensor, old_logits: torch.Tensor,
            weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows of KL(old row || new row); ``weight`` (rows,) weighs each row."""
    rows = F.kl_div(F.log_softmax(new_logits, -1), F.softmax(old_logits, -1), reduction="none").sum(-1)
    return (rows if weight is None else rows * weight).mean()


def relation_distillation(new: torch.Tensor, old: torch.Tensor, tau: float = 0.1,
                          weight: torch.Tensor | None = None) -> torch.Tensor:
    """(B, D) features of the same images from the new and the old model; ``weight`` (B,)
    weighs each image's row (mean over all B rows)."""
    n, o = F.normalize(new, dim=-1), F.normalize(old, dim=-1)
    eye = torch.eye(len(n), dtype=torch.bool, device=n.device)
    sn = (n @ n.T / tau).masked_fill(eye, -1e4)
    so = (o @ o.T / tau).masked_fill(eye, -1e4)
    return _row_kl(sn, so, weight)


def old_model_right(old: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
    """(B,) bool: whether each image's nearest other image under the old model's features
    (B, D), by cosine, is of the same person."""
    o = F.normalize(old, dim=-1)
    sim = (o @ o.T).fill_diagonal_(-2.0)
    return pids[sim.argmax(1)] == pids


def cross_modal_alignment(image: torch.Tensor, text: torch.Tensor, pids: torch.Tensor,
                          tau: float = 0.07) -> torch.Tensor:
    """(B, K, P) image and text attribute features; mean over the K groups of the symmetric
    InfoNCE with every same-person pair a positive."""
    v, t = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    pos = (pids[:, None] == pids[None, :]).float()
    target = pos / pos.sum(1, keepdim=True)
    logits = torch.einsum("ikp,jkp->kij", v, t) / tau          # (K, B, B)
    i2t = -(target * F.log_softmax(logits, -1)).sum(-1).mean()
    t2i = -(target * F.log_softmax(logits.transpose(1, 2), -1)).sum(-1).mean()
    return (i2t + t2i) / 2


def prototype_alignment(new: torch.Tensor, old: torch.Tensor, prototypes: torch.Tensor,
                        tau: float = 0.1) -> torch.Tensor:
    """``new``/``old``: (B, K, P) part features of the same images; ``prototypes``: (D, K, P)
    unit prototypes of earlier domains. For each part, KL between the old and new
    distributions over all D x K prototypes."""
    if prototypes.numel() == 0:
        return new.sum() * 0.0
    protos = prototypes.reshape(-1, prototypes.shape[-1])               # (D*K, P)
    sn = F.normalize(new, dim=-1) @ protos.T / tau                      # (B, K, D*K)
    so = F.normalize(old, dim=-1) @ protos.T / tau
    return _row_kl(sn.flatten(0, 1), so.flatten(0, 1))


def attribute_pull(emb: torch.Tensor, attrs: torch.Tensor, prototypes: torch.Tensor,
                   proto_attr: torch.Tensor) -> torch.Tensor:
    """``emb`` (B, D) embeddings of the new domain's crops, ``attrs`` (B, A) bool: what each
    crop's description states; ``prototypes`` (M, D) unit prototypes of earlier domains and
    ``proto_attr`` (M,) the attribute of each. Mean over the attributes that both the batch
    and the memory hold of 1 - cos(mean unit embedding of the batch's crops with the
    attribute, mean of its earlier prototypes); 0 when they share none."""
    n_attr = attrs.shape[1]
    if prototypes.numel() == 0:
        return emb.sum() * 0.0
    target = torch.zeros(n_attr, prototypes.shape[1], dtype=emb.dtype)
    target.index_add_(0, proto_attr, prototypes.to(emb.dtype))
    has_proto = torch.bincount(proto_attr, minlength=n_attr) > 0
    a = attrs.to(emb.dtype)
    count = a.sum(0)
    both = (count > 0) & has_proto
    if not bool(both.any()):
        return emb.sum() * 0.0
    centre = a.T @ F.normalize(emb, dim=-1)                           # (A, D) sums
    cos = F.cosine_similarity(centre[both], target[both], dim=-1)
    return (1 - cos).mean()
