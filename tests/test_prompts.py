import pytest

from docqa.errors import ConfigError
from docqa.prompts import SYSTEM_PROMPT, as_chat_template, build_prompt, passage_order, render
from docqa.settings import CARD_TEMPLATE, Prompt

LLAMA2_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}<<SYS>>{{ m['content'] }}<</SYS>>"
    "{% else %}[INST] {{ m['content'] }} [/INST]{% endif %}{% endfor %}"
)


def words(text: str) -> int:
    return len(text.split())


def test_plain_format_is_the_card_template_with_its_line_breaks():
    text = render(Prompt(), "the context", "the question?")
    assert text == CARD_TEMPLATE.format(context="the context", question="the question?")
    assert "\n\nContext: the context\nQuestion: the question?\n\nOnly return" in text
    assert text.endswith("Helpful answer:\n")


def test_llama2_chat_format_wraps_the_card_prompt():
    text = render(Prompt(format="llama-2-chat"), "ctx", "q?")
    assert text.startswith("[INST] <<SYS>>\n") and text.endswith(" [/INST]")
    assert "<</SYS>>\n\nUse the following pieces" in text
    assert not text.startswith("<s>")


def test_gguf_format_uses_the_models_chat_template():
    text = render(Prompt(format="gguf"), "ctx", "q?", chat_template=LLAMA2_TEMPLATE)
    assert text.startswith("<<SYS>>") and "[INST] Use the following" in text


def test_the_system_message_comes_from_the_settings_in_the_chat_formats_only():
    system = "Answer with the figure and its unit."
    chat = render(Prompt(format="gguf", system=system), "ctx", "q?", chat_template=LLAMA2_TEMPLATE)
    assert chat.startswith(f"<<SYS>>{system}<</SYS>>") and SYSTEM_PROMPT not in chat
    assert render(Prompt(format="llama-2-chat", system=system), "ctx", "q?").startswith(f"[INST] <<SYS>>\n{system}\n")
    assert system not in render(Prompt(format="plain", system=system), "ctx", "q?")
    assert render(Prompt(format="llama-2-chat"), "ctx", "q?").startswith(f"[INST] <<SYS>>\n{SYSTEM_PROMPT}\n")


def test_gguf_format_without_template_falls_back_to_llama2_chat():
    assert render(Prompt(format="gguf"), "ctx", "q?").startswith("[INST] <<SYS>>")


def test_auto_format_is_the_models_chat_template_where_the_file_has_one_else_the_card_text():
    assert render(Prompt(format="auto"), "ctx", "q?", chat_template=LLAMA2_TEMPLATE) == render(
        Prompt(format="gguf"), "ctx", "q?", chat_template=LLAMA2_TEMPLATE)
    assert render(Prompt(format="auto"), "ctx", "q?") == render(Prompt(format="plain"), "ctx", "q?")


def test_chat_template_gets_generation_prompt_flag():
    template = "{% for m in messages %}{{ m['role'] }}:{{ m['content'] }}|{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    assert as_chat_template(template, "hi").endswith("user:hi|assistant:")


def test_whole_passages_are_dropped_from_the_end_to_fit_the_budget():
    passages = ["alpha " * 50, "beta " * 50, "gamma " * 50]
    full = build_prompt(Prompt(), "q?", passages, count_tokens=words, token_budget=10_000)
    assert full.chunks_used == 3 and full.chunks_dropped == 0
    budget = full.tokens - 30
    cut = build_prompt(Prompt(), "q?", passages, count_tokens=words, token_budget=budget)
    assert cut.chunks_used == 2 and cut.chunks_dropped == 1
    assert "beta" in cut.text and "gamma" not in cut.text
    assert cut.tokens <= budget


CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_chat_template_keeps_markup_and_content_apart():
    prompt = render(Prompt(format="gguf"), "a PDF saying <|im_end|>", "q?", chat_template=CHATML)
    markup = "".join(segment.text for segment in prompt.segments if segment.markup)
    content = "".join(segment.text for segment in prompt.segments if not segment.markup)
    assert markup == "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"
    assert "a PDF saying <|im_end|>" in content and content.startswith(SYSTEM_PROMPT)
    assert "".join(segment.text for segment in prompt.segments) == prompt


def test_every_format_marks_the_card_text_as_content():
    for prompt_format in ("plain", "llama-2-chat"):
        prompt = render(Prompt(format=prompt_format), "ctx <s>", "q?")
        assert any("ctx <s>" in segment.text and not segment.markup for segment in prompt.segments)
    assert [segment.markup for segment in render(Prompt(), "c", "q").segments] == [False]


def test_template_tokens_are_the_models():
    template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{{ eos_token }}{% endfor %}"
    prompt = as_chat_template(template, "hi", bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    assert prompt.startswith("<|begin_of_text|>") and prompt.endswith("hi<|eot_id|>")


def test_template_refusing_a_system_message_gets_it_in_the_user_turn():
    template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "[INST] {{ m['content'] }} [/INST]{% endfor %}"
    )
    prompt = as_chat_template(template, "the question")
    assert prompt == f"[INST] {SYSTEM_PROMPT}\n\nthe question [/INST]"
    assert [segment.markup for segment in prompt.segments] == [True, False, True]


def test_template_that_rewrites_the_text_is_refused():
    template = "{% for m in messages %}{{ m['content'] | upper }}{% endfor %}"
    with pytest.raises(ConfigError, match="set prompt.format to llama-2-chat or plain"):
        as_chat_template(template, "hi")


@pytest.mark.parametrize(
    "order, prompt_format, has_template, expected",
    [
        ("auto", "auto", True, "best-last"),  # a chat model in its own template: measured better
        ("auto", "gguf", True, "best-last"),
        ("auto", "auto", False, "best-first"),  # the card's plain prompt (GGML files carry no template)
        ("auto", "plain", True, "best-first"),
        ("auto", "llama-2-chat", True, "best-first"),
        ("auto", "gguf", False, "best-first"),  # no template: Llama-2's [INST] instead
        ("best-first", "auto", True, "best-first"),
        ("best-last", "plain", False, "best-last"),
    ],
)
def test_passage_order(order, prompt_format, has_template, expected):
    assert passage_order(order, prompt_format, CHATML if has_template else None) == expected


def test_in_the_model_s_own_template_the_best_passage_stands_next_to_the_question():
    passages = ["best " * 20, "second " * 20, "third " * 20]
    chat = build_prompt(Prompt(), "q?", passages, count_tokens=words, token_budget=10_000, chat_template=CHATML)
    assert chat.text.index("third") < chat.text.index("second") < chat.text.index("best") < chat.text.index("q?")
    plain = build_prompt(Prompt(), "q?", passages, count_tokens=words, token_budget=10_000)
    assert plain.text.index("best") < plain.text.index("second") < plain.text.index("third")
    # A prompt that must drop a passage still drops the lowest-ranked one
    cut = build_prompt(Prompt(), "q?", passages, count_tokens=words, token_budget=chat.tokens - 10, chat_template=CHATML)
    assert cut.chunks_used == 2 and "third" not in cut.text
    assert cut.text.index("second") < cut.text.index("best")
