"""Models: encoders, the attribute (PAR) model, embedding heads, the describer, LOMO, and the
hub (``models.hub``) that saves, loads and names them."""
from .factory import create, create_image_encoder, create_text_encoder, list_models

__all__ = ["create", "create_image_encoder", "create_text_encoder", "list_models"]
