"""Where the model comes from, checked in seconds before an engine is started.

vLLM and transformers resolve a Hugging Face id themselves, but on a machine that cannot reach
the hub they retry for ~35 s and end in a multi-hundred-line traceback. A server that cannot load
its model should say so in one line: which model, why, and what to do instead.
"""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
from huggingface_hub import constants

WHAT_TO_DO = (
    "pass a local folder (--model /path/to/model), download it first "
    "(hf download {model}), or set HF_HUB_OFFLINE=1 with the model in the Hugging Face cache"
)


class ModelUnavailable(RuntimeError):
    """The model cannot be loaded; the message is one line meant for the operator."""


def check_model(model: str, revision: str | None = None) -> None:
    """Raise :class:`ModelUnavailable` unless ``model`` is a local checkpoint folder, in the
    Hugging Face cache, or known to a reachable hub (network errors are not retried here)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailable(f"cannot load model {model!r}: the folder has no config.json")
        return
    if model.startswith(("/", ".", "~")) or model.count("/") > 1:
        raise ModelUnavailable(f"cannot load model {model!r}: no such folder")
    cached = huggingface_hub.try_to_load_from_cache(model, "config.json", revision=revision)
    if isinstance(cached, str):
        return
    hint = WHAT_TO_DO.format(model=model)
    if constants.HF_HUB_OFFLINE:
        raise ModelUnavailable(
            f"cannot load model {model!r}: not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set; {hint}"
        )
    try:
        huggingface_hub.model_info(model, revision=revision, timeout=10)
    except Exception as err:  # any failure to reach or find it is the answer
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelUnavailable(
            f"cannot load model {model!r}: not a local folder, not in the Hugging Face cache, "
            f"and {constants.ENDPOINT} answered: {reason[:200]}; {hint}"
        ) from err
