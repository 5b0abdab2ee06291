"""The one exception hierarchy of edgeinf; every message says what to do next."""

from __future__ import annotations


class EdgeinfError(Exception):
    """Base of every error edgeinf raises on purpose.

    `code` is a stable machine-readable name (used by `--json` output and, later, the
    OpenAI-shaped HTTP errors); the message is one line a person can act on.
    """

    code = "edgeinf_error"


class ConfigError(EdgeinfError):
    code = "invalid_config"


class ModelNotFoundError(EdgeinfError):
    code = "model_not_found"


class ModelFileError(EdgeinfError):
    """A model file that is missing, truncated, malformed or unsafe to load."""

    code = "invalid_model_file"


class PullError(EdgeinfError):
    code = "pull_failed"


class ChecksumMismatchError(PullError):
    code = "checksum_mismatch"


class TemplateError(EdgeinfError):
    """A chat template that is unsafe or cannot render the conversation."""

    code = "invalid_chat_template"


class ContextLengthExceededError(EdgeinfError):
    code = "context_length_exceeded"

    def __init__(self, n_prompt: int, n_ctx: int, max_tokens: int = 0) -> None:
        self.n_prompt = n_prompt
        self.n_ctx = n_ctx
        need = f"{n_prompt} prompt tokens" + (f" + {max_tokens} to generate" if max_tokens else "")
        super().__init__(
            f"the prompt needs {need} but the context holds {n_ctx}; "
            "shorten the prompt, lower --max-tokens, raise --ctx, or let older turns go "
            "(context_policy truncate or summarize)"
        )


class InvalidRequestError(EdgeinfError):
    code = "invalid_request"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param  # the request field at fault, where one is


class EngineError(EdgeinfError):
    """llama.cpp refused an operation (load, context creation, decode)."""

    code = "engine_error"


class InsufficientMemoryError(EdgeinfError):
    code = "insufficient_memory"


class MissingExtraError(ConfigError):
    """A part of edgeinf that needs an optional extra which is not installed."""

    code = "missing_extra"

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(
            f"{what} needs the {extra} extra; install it with: pip install 'edgeinf[{extra}]'"
        )
