"""Retrieved chunks + question → the prompt text, in the configured format and within the context window."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from docqa.settings import Prompt

log = logging.getLogger(__name__)

SYSTEM_PROMPT = "You answer questions about documents using only the context you are given."


@dataclass(frozen=True)
class BuiltPrompt:
    text: str
    chunks_used: int
    chunks_dropped: int
    tokens: int


def fill_template(template: str, context: str, question: str) -> str:
    # What LangChain's f-string PromptTemplate does, without importing langchain_core.prompts: that import
    # took about 2 s of every process's first answer, ahead of the first token.
    return template.format(context=context, question=question)


def as_llama2_chat(user: str, system: str = SYSTEM_PROMPT) -> str:
    # The tokenizer adds the BOS token <s>; writing it here too would double it.
    return f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user.strip()} [/INST]"


def as_chat_template(template: str, user: str, system: str = SYSTEM_PROMPT) -> str:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    messages = [{"role": "system", "content": system}, {"role": "user", "content": user.strip()}]
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    rendered = env.from_string(template).render(
        messages=messages, bos_token="", eos_token="</s>", add_generation_prompt=True,
        raise_exception=lambda message: (_ for _ in ()).throw(ValueError(message)),
    )
    return rendered


def render(settings: Prompt, context: str, question: str, chat_template: Optional[str] = None) -> str:
    return apply_format(settings.format, fill_template(settings.template, context, question), chat_template)


def apply_format(prompt_format: str, user: str, chat_template: Optional[str] = None) -> str:
    """A filled-in template as the user's turn in the configured prompt format (``plain``: unchanged)."""
    if prompt_format == "plain":
        return user
    if prompt_format == "gguf" and chat_template:
        return as_chat_template(chat_template, user)
    if prompt_format == "gguf":
        log.warning("the model file has no chat template; using the llama-2-chat format")
    return as_llama2_chat(user)


def build_prompt(
    settings: Prompt,
    question: str,
    passages: Sequence[str],
    *,
    count_tokens: Callable[[str], int],
    token_budget: int,
    chat_template: Optional[str] = None,
) -> BuiltPrompt:
    """The prompt with as many whole passages as fit ``token_budget``, dropping from the end."""
    for kept in range(len(passages), -1, -1):
        text = render(settings, "\n\n".join(passages[:kept]), question, chat_template)
        tokens = count_tokens(text)
        if tokens <= token_budget or kept == 0:
            return BuiltPrompt(text, kept, len(passages) - kept, tokens)
    raise AssertionError("unreachable")
