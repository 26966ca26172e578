"""Translation models (CycleGAN): the caller's images to the other domain; Translate, and ModelInfer with an `images` input."""

from __future__ import annotations

import numpy as np

from generator_service.jobs import Job
from generator_service.kinds.base import ServingKind
from generator_service.translate import QUEUE_KINDS, compute_translation, warm_up_translation
from generator_service.validation import _invalid


class TranslationKind(ServingKind):
    name = "translation"
    makes = "translated images"
    answered_by = "Translate"
    calls = frozenset({"Translate", "ModelInfer"})
    inputs = {"images": (("UINT8",), "[N, H, W, C]")}
    inputs_help = "images (UINT8, [N, H, W, C]) and the string parameter direction (a_to_b or b_to_a)"

    def compute(self, model, parts, padded, output_kind):
        inputs = [p.job.inputs[p.start : p.start + p.count] for p in parts]
        return compute_translation(model, inputs, parts[0].job.direction, padded), None

    def warm_up(self, model, shapes, fast_path, max_batch_size):
        warm_up_translation(model, shapes)

    def tensor_metadata(self, model):
        self.require(model, "ModelInfer")
        m = model.manifest
        images = ("images", "UINT8", [-1, m.image_size, m.image_size, m.channels])
        return [images], [images]

    def job(self, model, inputs: np.ndarray, direction: str, deadline: float | None) -> Job:
        """A Translate job of decoded images (float32 N×C×H×W in [-1, 1]); one queue per direction."""
        return Job(model=model, num_samples=len(inputs), seed=0, output_kind=QUEUE_KINDS[direction], inputs=inputs, direction=direction, deadline=deadline)

    def infer_job(self, model, tensors, parameters, *, max_samples, max_message_bytes, deadline):
        """Raw UINT8 pixels of the model's size, read straight into the batch's float form (no PNG, no resize)."""
        self.require(model, "ModelInfer")
        m = model.manifest
        if set(tensors) != {"images"}:
            raise _invalid(f"model {m.run!r} translates images: it takes {self.inputs_help}, got the inputs {sorted(tensors)}")
        direction = parameters.get("direction", "")
        if direction not in QUEUE_KINDS:
            shown = direction if isinstance(direction, str) and len(direction) <= 16 else f"a {type(direction).__name__}"
            raise _invalid(f"set the string parameter direction to a_to_b or b_to_a, got {shown or 'none'}")
        images = tensors["images"]
        wanted = [m.image_size, m.image_size, m.channels]
        if list(images.shape[1:]) != wanted:
            raise _invalid(f"input 'images' must be UINT8 [N, {', '.join(map(str, wanted))}] for model {m.run!r} (version {m.step}), got {list(images.shape)}")
        answer = images.shape[0] * m.image_size * m.image_size * m.channels
        if answer > max_message_bytes:
            raise _invalid(f"the answer would be about {answer // 2**20} MiB, above the {max_message_bytes // 2**20} MiB message limit; send fewer images per call")
        pixels = images.array()
        inputs = pixels.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
        return self.job(model, np.ascontiguousarray(inputs), direction, deadline)


TRANSLATION = TranslationKind()
