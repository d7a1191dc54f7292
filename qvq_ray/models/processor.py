"""Load the Qwen2-VL processor of a checkpoint, image-only when torchvision is absent.

Why: transformers 5.x `Qwen2VLProcessor` insists on a video processor, which needs torchvision;
PyPI's torchvision does not import beside the CPU torch build, and QVQ is images-only anyway.
`ImageOnlyQwen2VLProcessor` is the same processor (same token expansion of `<|image_pad|>`, same
`mm_token_type_ids`) minus the video half. With torchvision installed (GPU hosts), the stock
`AutoProcessor` is used. Either way it loads from the checkpoint's own files, tiny or QVQ-72B.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import Qwen2VLProcessor


def _image_only_processor_class() -> type[Qwen2VLProcessor]:
    from transformers import ProcessorMixin, Qwen2VLProcessor

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):  # type: ignore[misc]  # transformers is not analysed: Any
        """Qwen2VLProcessor without the video processor (images only, no torchvision)."""

        def __init__(
            self,
            image_processor: Any = None,
            tokenizer: Any = None,  # a PreTrainedTokenizerBase: always given
            chat_template: str | None = None,
            **kwargs: Any,
        ) -> None:
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = getattr(tokenizer, "image_token_id", None) or tokenizer.convert_tokens_to_ids(
                self.image_token
            )
            self.video_token_id = getattr(tokenizer, "video_token_id", None) or tokenizer.convert_tokens_to_ids(
                self.video_token
            )
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageOnlyQwen2VLProcessor


def torchvision_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401  (PyPI torchvision beside CPU torch fails at import)
    except Exception:
        return False
    return True


def load_processor(path: str, *, min_pixels: int | None = None, max_pixels: int | None = None) -> Any:
    """The checkpoint's processor with our pixel limits applied (left padding for batching)."""
    from transformers import AutoTokenizer

    pixel_kwargs = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
    if torchvision_available():
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(path, **pixel_kwargs)
    else:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        tokenizer = AutoTokenizer.from_pretrained(path)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, **pixel_kwargs)
        processor = _image_only_processor_class()(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template
        )
    processor.tokenizer.padding_side = "left"  # batched generation needs left padding
    if processor.chat_template is None:
        processor.chat_template = getattr(processor.tokenizer, "chat_template", None)
    return processor
