from docqa.prompts import as_chat_template, build_prompt, render
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


def test_gguf_format_without_template_falls_back_to_llama2_chat():
    assert render(Prompt(format="gguf"), "ctx", "q?").startswith("[INST] <<SYS>>")


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
