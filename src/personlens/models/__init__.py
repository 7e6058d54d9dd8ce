from .registry import create, create_image_encoder, create_text_encoder, list_models

__all__ = ["create", "create_image_encoder", "create_text_encoder", "list_models"]
