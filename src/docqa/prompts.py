"""Retrieved chunks + question → the prompt text, in the configured format and within the context window.

A prompt is the format's own markup (a chat template's ``<|im_start|>``, ``[INST]``) around content
(the card's instruction, the passages, the question). ``PromptText`` keeps the two apart so that a
backend parses special tokens in the markup only: a PDF or a question containing the literal text
``<|im_end|>`` stays text and cannot end the turn or inject one.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Sequence

from docqa.errors import ConfigError
from docqa.settings import SYSTEM_PROMPT, Prompt

log = logging.getLogger(__name__)

# Stands for a message's content while the chat template renders: no template writes NUL characters.
_PLACEHOLDER = re.compile("\x00docqa-content-(\\d+)\x00")


class Segment(NamedTuple):
    text: str
    markup: bool  # True: the format's own text, whose special tokens are real; False: content, always plain text


class PromptText(str):
    """The prompt as one string (what every caller that only reads text sees) that also knows its segments.

    A plain ``str`` prompt counts as content from end to end: nothing in it is parsed as a special token.
    """

    segments: tuple[Segment, ...]

    def __new__(cls, segments: Sequence[Segment]) -> "PromptText":
        kept = tuple(segment for segment in segments if segment.text)
        prompt = super().__new__(cls, "".join(segment.text for segment in kept))
        prompt.segments = kept
        return prompt


def segments_of(prompt: str) -> tuple[Segment, ...]:
    return prompt.segments if isinstance(prompt, PromptText) else (Segment(prompt, False),)


@dataclass(frozen=True)
class BuiltPrompt:
    text: PromptText
    chunks_used: int
    chunks_dropped: int
    tokens: int


def fill_template(template: str, context: str, question: str) -> str:
    # What LangChain's f-string PromptTemplate does, without importing langchain_core.prompts: that import
    # took about 2 s of every process's first answer, ahead of the first token.
    return template.format(context=context, question=question)


def as_llama2_chat(user: str, system: str = SYSTEM_PROMPT) -> PromptText:
    # The tokenizer adds the BOS token <s>; writing it here too would double it.
    return PromptText([
        Segment("[INST] <<SYS>>\n", True), Segment(system, False), Segment("\n<</SYS>>\n\n", True),
        Segment(user.strip(), False), Segment(" [/INST]", True),
    ])


def as_chat_template(
    template: str, user: str, system: str = SYSTEM_PROMPT, *, bos_token: str = "", eos_token: str = ""
) -> PromptText:
    """``user`` (and ``system``) rendered by the model's Jinja chat template, in a sandbox.

    ``bos_token``/``eos_token`` are the model's own (from its metadata); a template that writes the BOS
    token gets it once, the backend adds none then. Templates that refuse a system message (several
    Mistral ones) get its text at the head of the user message instead.
    """
    contents = [system, user.strip()]
    try:
        rendered = _render(template, [("system", 0), ("user", 1)], bos_token, eos_token)
    except ValueError:
        contents = [f"{system}\n\n{user.strip()}"]
        rendered = _render(template, [("user", 0)], bos_token, eos_token)
    segments, position, seen = [], 0, []
    for placeholder in _PLACEHOLDER.finditer(rendered):
        index = int(placeholder.group(1))
        segments += [Segment(rendered[position : placeholder.start()], True), Segment(contents[index], False)]
        position = placeholder.end()
        seen.append(index)
    segments.append(Segment(rendered[position:], True))
    if sorted(seen) != list(range(len(contents))):
        raise ConfigError(
            "the model's chat template does not place each message's text once as it is; "
            "set prompt.format to llama-2-chat or plain"
        )
    return PromptText(segments)


def _render(template: str, messages: list[tuple[str, int]], bos_token: str, eos_token: str) -> str:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(
        messages=[{"role": role, "content": f"\x00docqa-content-{index}\x00"} for role, index in messages],
        bos_token=bos_token, eos_token=eos_token, add_generation_prompt=True, raise_exception=raise_exception,
    )


def render(
    settings: Prompt, context: str, question: str, chat_template: Optional[str] = None, template_tokens: Optional[dict] = None
) -> PromptText:
    """The filled card template in the configured format; ``template_tokens``: the model's bos_token/eos_token."""
    filled = fill_template(settings.template, context, question)
    return apply_format(settings.format, filled, chat_template, template_tokens, settings.system)


def apply_format(
    prompt_format: str, user: str, chat_template: Optional[str] = None, template_tokens: Optional[dict] = None,
    system: str = SYSTEM_PROMPT,
) -> PromptText:
    """A filled-in template, all of it content, as the user's turn in a prompt format (``plain``: unchanged), after
    the ``system`` message in the chat formats."""
    resolved = resolved_format(prompt_format, chat_template)
    if resolved == "plain":
        return PromptText([Segment(user, False)])
    if resolved == "gguf":
        return as_chat_template(chat_template, user, system, **(template_tokens or {}))
    if prompt_format == "gguf":
        log.warning("the model gives docqa no chat template (a file without one, or a server backend); using the "
                    "llama-2-chat format")
    return as_llama2_chat(user, system)


def resolved_format(prompt_format: str, chat_template: Optional[str]) -> str:
    """``plain``, ``gguf`` (the model's own chat template) or ``llama-2-chat``: ``auto`` is the model's own turn
    around the card's text where the file has a template, else plain; ``gguf`` without a template is Llama-2's."""
    if prompt_format == "auto":
        return "gguf" if chat_template else "plain"
    if prompt_format == "gguf" and not chat_template:
        return "llama-2-chat"
    return prompt_format


def context(passages: Sequence[str], order: str = "best-first") -> str:
    """The passages (best first, as retrieved) as the prompt's context, in ``order`` (see ``passage_order``)."""
    return "\n\n".join(reversed(passages) if order == "best-last" else passages)


def passage_order(order: str, prompt_format: str, chat_template: Optional[str]) -> str:
    """``prompt.passage_order`` resolved: ``auto`` is best-last where the prompt is the model's own chat turn, else
    best-first. The best passage next to the question measured better with a chat model in its own template
    (docs/answers.md); in other formats it was not measured, and a tiny model in a format it was not trained
    on (SmolLM2 in Llama-2's [INST]) lost the fact, so those keep retrieval order, as the card's pipeline has it."""
    if order != "auto":
        return order
    return "best-last" if resolved_format(prompt_format, chat_template) == "gguf" else "best-first"


def build_prompt(
    settings: Prompt,
    question: str,
    passages: Sequence[str],
    *,
    count_tokens: Callable[[str], int],
    token_budget: int,
    chat_template: Optional[str] = None,
    template_tokens: Optional[dict] = None,
) -> BuiltPrompt:
    """The prompt with as many whole passages as fit ``token_budget``, dropping the lowest-ranked; ``passages`` come
    best first, and go into the prompt in the order ``settings.passage_order`` says."""
    order = passage_order(settings.passage_order, settings.format, chat_template)
    for kept in range(len(passages), -1, -1):
        text = render(settings, context(passages[:kept], order), question, chat_template, template_tokens)
        tokens = count_tokens(text)
        if tokens <= token_budget or kept == 0:
            return BuiltPrompt(text, kept, len(passages) - kept, tokens)
    raise AssertionError("unreachable")
