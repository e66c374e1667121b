"""Typed settings read once from config.yml.

Every section rejects unknown keys, so a typo is named instead of silently ignored.
Relative paths are resolved against the project root: the folder holding config.yml, or the current folder for
settings without a file.
"""

from __future__ import annotations

import ipaddress
import os
import re
import string
from pathlib import Path
from typing import Annotated, Literal, Optional

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from docqa.checkout import CHECKOUT
from docqa.errors import ConfigError, InputError

CONFIG_NAME = "config.yml"
CHECKOUT_CONFIG = CHECKOUT / CONFIG_NAME  # the file the checkout's scripts read without --config

CARD_TEMPLATE = """Use the following pieces of information to answer the user's question.
If you don't know the answer, just say that you don't know, don't try to make up an answer.

Context: {context}
Question: {question}

Only return the helpful answer below and nothing else.
Helpful answer:
"""
# The second sentence makes a small model state the figure with its unit and subject ("50.0 million records", not
# "50.0"): 47 of 74 answers right on our Manchester United questions against 40 with the first sentence alone, none
# lost (docs/answers.md, "System message").
SYSTEM_PROMPT = (
    "You answer questions about documents using only the context you are given. "
    "Answer in one or two sentences, giving the figures from the context that the answer rests on, with their units."
)


def _not_a_boolean(value):
    # YAML reads yes, no, on, off, true and false as booleans, which pydantic would take for 1 and 0.
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a number")
    return value


def _not_blank(what: str):
    # An empty path would be the config's own folder: an index there shares it with everything else, and a model
    # file there is "not found: <the folder>".
    def check(value):
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"an empty path; give a {what}, or remove the line for the default")
        return value

    return BeforeValidator(check)


Whole = Annotated[int, BeforeValidator(_not_a_boolean)]
Number = Annotated[float, BeforeValidator(_not_a_boolean)]
Folder = Annotated[Path, _not_blank("folder")]
File = Annotated[Path, _not_blank("file")]


_ORIGIN = re.compile(r"(https?)://(\[[0-9a-f:.]+\]|[^/:\[\]\s]+)(?::(\d{1,5}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def browser_origin(origin: str) -> str:
    """``origin`` as a browser writes it in an Origin header (scheme://host[:port], lower case, a host name in
    its ASCII form, an IPv6 address compressed, no default port, no path), or ``*``; ValueError if it is none."""
    text = origin.strip().rstrip("/")
    if text == "*":
        return text
    match = _ORIGIN.fullmatch(text.lower())
    problem = f"{origin!r} is not an origin: write scheme://host[:port], such as http://localhost:3000, or \"*\""
    if match is None:
        raise ValueError(problem)
    scheme, host, port = match.groups()
    try:
        if host.startswith("["):
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        else:
            host = host.encode("idna").decode("ascii")  # bücher.example is sent as xn--bcher-kva.example
    except (ValueError, UnicodeError):
        raise ValueError(problem) from None
    if not re.fullmatch(r"\[[0-9a-f:.]+\]|[a-z0-9.-]+", host) or (port and not 0 < int(port) <= 65535):
        raise ValueError(problem)
    if port and int(port) != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{int(port)}"
    return f"{scheme}://{host}"

class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __setattr__(self, name: str, value) -> None:
        # settings.retrieval.k = 0 in a script: the one-line reason config.yml's value gets, not pydantic's report
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, within=SECTION_NAMES.get(type(self), ""))) from None


class Paths(Section):
    data: Folder = Field(Path("data"), description="Folder searched recursively for *.pdf files.")
    vectorstore: Folder = Field(Path("vectorstore"), description="Folder holding the index.")
    models: Folder = Field(Path("models"), description="Folder holding local model files.")


class Ingest(Section):
    extractor: Literal["pypdfium2", "pypdf"] = Field(
        "pypdfium2", description="PDF text extractor; pypdfium2 is much faster and keeps table rows on a line."
    )
    chunk_size: Whole = Field(500, gt=0, description="Characters per chunk.")
    chunk_overlap: Whole = Field(50, ge=0, description="Characters shared by neighbouring chunks.")

    @model_validator(mode="after")
    def _overlap_below_size(self):
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


class Embeddings(Section):
    model: str = Field(
        "sentence-transformers/all-MiniLM-L6-v2", description="Sentence-transformers model name or local folder."
    )
    runtime: Literal["onnx", "torch"] = Field(
        "onnx", description="onnx: ONNX Runtime on a model exported once to ONNX; torch: sentence-transformers "
        "(pip install 'docqa[export]')."
    )
    batch_size: Whole = Field(
        8, gt=0, description="Chunks embedded per batch; small batches of similar length stay in the CPU's cache."
    )
    chunk_precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "auto",
        description="How chunks are embedded at build time (questions always exactly): fp32; bf16 (OpenVINO, within "
        "cosine 0.9999 of fp32, 3x as fast where the CPU has AMX or AVX512-BF16); int8 (ONNX copy, 2x as fast on "
        "any CPU, recall slightly lower, needs runtime onnx); auto: bf16 where the CPU has native bfloat16 and OpenVINO is "
        "installed (pip install 'docqa[bf16]'), else fp32.",
    )

    @model_validator(mode="after")
    def _int8_needs_onnx(self) -> "Embeddings":
        if self.chunk_precision == "int8" and self.runtime != "onnx":
            raise ValueError("chunk_precision int8 needs runtime: onnx")
        return self

    @property
    def build_precision(self) -> str:
        """chunk_precision with auto resolved for this CPU."""
        if self.chunk_precision != "auto":
            return self.chunk_precision
        return "bf16" if native_bfloat16() and openvino_installed() else "fp32"


def openvino_installed() -> bool:
    """bf16 chunk vectors run on OpenVINO, an optional install (the ``bf16`` extra)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def native_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (Linux: read from ``cpuinfo``'s flags, without importing
    torch); False where there is no such file."""
    try:
        flags = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(amx_bf16|avx512_bf16)\b", flags))


MAX_K = 10_000  # passages per question, in config.yml as on the command line; more is a typo, not a request


class Retrieval(Section):
    k: Whole = Field(4, gt=0, le=MAX_K, description="Chunks put into the prompt.")
    mode: Literal["hybrid", "dense"] = Field("hybrid", description="hybrid: dense + BM25 fused by reciprocal rank; dense: FAISS only.")
    named_documents: bool = Field(
        True, description="When a question names an indexed company (and a year, quarter or form), search only those "
        "documents; when it names no company but a whole date, only the documents whose period ends that day."
    )
    statements: bool = Field(
        True, description="When a question names a metric of the financial statements (total assets, gross margin, "
        "capital expenditure, ...), the pages of those statements (found by their titles, in the searched documents) "
        "are a further ranking in the fusion.")
    candidates: Whole = Field(50, gt=0, description="Chunks each search (dense, BM25) returns before fusion, reranking and diversity.")
    max_per_page: Whole = Field(1, gt=0, description="At most this many of the k chunks come from one page.")
    context_chars: Whole = Field(
        2400, ge=0, description="A passage is joined with the adjacent chunk of its page that scores nearly as high "
        "(a table's caption and its figures), best passage first, and the best passage, if still one chunk, with the "
        "next chunk of its page, while the k passages total at most this many characters; 0 never joins.")
    reranker: Optional[Folder] = Field(
        None, description="Optional: folder of a local sentence-transformers cross-encoder that reorders the candidates."
    )


class LLM(Section):
    backend: Literal["auto", "llama-cpp", "ctransformers", "openai", "ollama"] = Field(
        "auto",
        description="auto picks by the model file's magic bytes and what is installed; openai: an OpenAI-compatible "
        "server (llama.cpp, llama_cpp.server, llamafile, LM Studio, vLLM, GPT4All); ollama: Ollama's own API.",
    )
    model_path: File = Field(Path("models/llama-2-7b-chat.Q8_0.gguf"), description="Local GGUF or GGML v3 model file.")
    model_type: str = Field(
        "llama", description="ctransformers: the architecture of a GGML file (llama for the card's GGML v3); a GGUF file "
        "names its own.")
    max_new_tokens: Whole = Field(
        256, gt=0, description="Most tokens an answer may take; the rest of the context window holds the prompt.")
    temperature: Number = Field(
        0.01, ge=0, description="Sampling temperature: 0 always picks the likeliest token; higher varies the wording.")
    context_length: Whole = Field(
        2048, gt=0, le=1_048_576,  # beyond, llama.cpp's 32-bit count wraps or the memory for it runs out (killed)
        description="Context window in tokens; ctransformers defaults to 512 otherwise.")
    threads: Optional[Whole] = Field(None, gt=0, description="CPU threads; empty means all cores.")
    batch_size: Whole = Field(512, gt=0, description="Prompt tokens evaluated per batch.")
    prompt_lookup: Whole = Field(
        0, ge=0, description="llama-cpp: draft this many tokens per step by prompt lookup (an answer copies figures and "
        "names from the passages; the model checks every drafted token, so the text is the same); 0: off.",
    )
    stop: list[str] = Field(
        default_factory=lambda: ["\nQuestion:", "\nContext:", "</s>", "[INST]"],
        description="Texts that end an answer where the model writes them (left out of the answer): a model that "
        "goes on to invent the next question stops there.")
    base_url: Optional[str] = Field(
        None, description="openai backend: server URL, e.g. http://127.0.0.1:8080/v1; ollama: default http://127.0.0.1:11434."
    )
    model: Optional[str] = Field(
        None, description="openai backend: model name on the server (empty: the first it lists); ollama: the pulled model, e.g. llama2."
    )
    api_key_env: Optional[str] = Field(None, description="openai backend: environment variable holding the API key.")
    api: Literal["completions", "chat"] = Field(
        "completions",
        description="Server backends: completions sends docqa's rendered prompt as it is (/v1/completions, Ollama's raw "
        "/api/generate); chat sends it as one user message and the server applies the model's chat template.",
    )
    stream: bool = Field(True, description="openai backend: stream the answer; GPT4All's server refuses streaming, set false.")
    send_stop: bool = Field(
        True, description="openai backend: send llm.stop to the server (docqa cuts at them anyway); GPT4All's server refuses it, set false."
    )
    timeout_s: Number = Field(
        600, gt=0, description="Server backends: seconds to wait for the server's next bytes; a CPU server reads a long prompt for minutes."
    )

    @field_validator("base_url")
    @classmethod
    def _a_web_address(cls, value: Optional[str]) -> Optional[str]:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with http:// or https://, e.g. http://{value}")
        return value


class Prompt(Section):
    # auto, measured on Qwen2.5-1.5B-Instruct (bench/answers.py, FinanceBench tuning half): as many correct answers
    # as plain, and every answer ended by the model's own end of turn (plain ran 6 of 12 to the token cap).
    format: Literal["auto", "plain", "llama-2-chat", "gguf"] = Field(
        "auto",
        description="auto: gguf where the model file has a chat template, else plain; plain: the card's template; "
        "llama-2-chat: [INST] <<SYS>>; gguf: the model's own chat template.",
    )
    template: str = Field(CARD_TEMPLATE, description="Must contain {context} and {question}.")
    system: str = Field(SYSTEM_PROMPT, description="The system message in the chat formats (gguf, llama-2-chat); the "
                        "plain format has none, nor has llm.api: chat, which sends the card's text as the one user "
                        "message. A template that refuses system messages gets it ahead of the user's turn.")
    # auto, from Qwen2.5-1.5B in its own chat template (bench/answers.py): best-last answered 16 of 29 against 14 on our
    # Manchester United questions and 6 of 38 against 3 on the FinanceBench report half, losing none there.
    passage_order: Literal["auto", "best-last", "best-first"] = Field(
        "auto", description="Order of the passages in {context}: best-last puts the best passage next to the question; "
        "best-first is retrieval order, as the card's pipeline has it; auto: best-last where the prompt is the model's "
        "own chat template, else best-first. Sources are listed best first either way.",
    )

    @model_validator(mode="after")
    def _has_placeholders(self):
        # Filled as LangChain's f-string templates are (str.format): any other {field} failed every answer, after the
        # model had loaded, with "unexpected KeyError"
        literal = "a literal brace is written {{ or }}"
        try:
            fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(self.template)
                      if name is not None]
        except ValueError as error:  # "Single '}' encountered in format string"
            raise ValueError(f"template: {str(error)[0].lower()}{str(error)[1:]}; {literal}") from None
        for name, spec, conversion in fields:
            written = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            if name not in ("context", "question") or spec or conversion:
                raise ValueError(f"template: {written} is not a placeholder (only {{context}} and {{question}} are); "
                                 f"{literal}")
        for name in ("context", "question"):
            if name not in {field[0] for field in fields}:
                raise ValueError(f"template must contain {{{name}}}")
        return self


class Serve(Section):
    host: str = Field("127.0.0.1", description="Address the web app listens on; any other than loopback needs an API token.")
    port: Whole = Field(8000, ge=0, le=65535, description="TCP port of the web app.")
    token_env: str = Field(
        "DOCQA_API_TOKEN",
        description="Environment variable holding the API token; when set, every /api and /v1 request needs "
        "'Authorization: Bearer <token>'. Required to listen on an address other than loopback.",
    )
    max_upload_mb: Number = Field(200.0, gt=0, description="Largest upload request (all its PDFs together), in MB.")
    watch: bool = Field(True, description="Index PDFs added to, changed in or removed from the data folder while serving.")
    watch_interval: Number = Field(2.0, gt=0, description="Seconds between looks at the data folder when watching.")
    max_waiting: Whole = Field(64, gt=0, description="Questions waiting for the model at most; more are refused (429, with Retry-After).")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port], or *) whose web pages may call /api and /v1 from a browser, such "
        "as a chat front end served elsewhere; needs an API token (serve.token_env).",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _one_or_more(cls, value):
        return [value] if isinstance(value, str) else value  # cors_origins: "*" means one origin

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        return [browser_origin(origin) for origin in origins]


class Storage(Section):
    backend: str = Field(
        "sqlite-faiss",
        description="The index store: sqlite-faiss (SQLite + FAISS files in paths.vectorstore); others register in "
        "docqa.storage.STORES.",
    )


# The sections that decide which index the settings name and how it is built
INDEX_SECTIONS = ("paths", "store", "ingest", "embeddings")


class Settings(Section):
    paths: Paths = Field(default_factory=Paths, description="Where the PDFs, the index and the model files are.")
    store: Storage = Field(default_factory=Storage, description="Which store holds the index.")
    ingest: Ingest = Field(default_factory=Ingest, description="How PDFs are read and cut into chunks.")
    embeddings: Embeddings = Field(default_factory=Embeddings, description="The model that embeds chunks and "
                                   "questions, and how it runs.")
    retrieval: Retrieval = Field(default_factory=Retrieval, description="Which chunks a question gets.")
    llm: LLM = Field(default_factory=LLM, description="The language model that answers, and how it generates.")
    prompt: Prompt = Field(default_factory=Prompt, description="The prompt the model is given.")
    serve: Serve = Field(default_factory=Serve, description="The web app and HTTP API (docqa serve).")
    _root: Path = PrivateAttr(default_factory=Path.cwd)  # settings made in code: paths count from where it runs
    _file: Optional[Path] = PrivateAttr(None)
    _advised_config: Optional[str] = PrivateAttr(None)  # the --config advice names, where not ``_file`` itself
    _file_index: Optional[dict] = PrivateAttr(None)  # the index's sections as load_settings read them (no overrides)

    @property
    def index_as_in_file(self) -> bool:
        """Whether the index these settings name is the one their settings file names, which the commands build
        and search (not where the index's sections were set in code, or the settings were made in code)."""
        return self._file_index is not None and self._file_index == self._index_part()

    def _index_part(self) -> dict:
        return self.model_dump(include=set(INDEX_SECTIONS), mode="json")

    @property
    def root(self) -> Path:
        """The folder relative paths are resolved against: the one holding config.yml."""
        return self._root

    @property
    def own_config(self) -> Optional[str]:
        """The settings file these came from where the scripts would not read it by themselves (not this
        checkout's config.yml): the ``--config`` their advice must name."""
        if self._file is None or self._file == CHECKOUT_CONFIG:
            return None
        return self._advised_config or str(self._file)

    def advised_to_clients(self) -> "Settings":
        """These settings, with advice naming their file by its path in the project folder (``team.yml``): a server
        says its advice to every client, and named the server's own path in it (``--config /srv/docqa/team.yml``)."""
        copy = self.model_copy()
        if self.own_config is not None:
            copy._advised_config = os.path.relpath(self.own_config, self.root)
        return copy

    def path(self, value: Path) -> Path:
        """Resolve a configured path against the project root."""
        return resolve_path(value, self.root)


def resolve_path(value: Path, root: Path) -> Path:
    """A configured path (``~`` expanded) as an absolute one, a relative one taken from ``root``."""
    value = Path(value).expanduser()
    return value if value.is_absolute() else Path(root) / value


def check_one_chat_template(settings: Settings) -> None:
    """ConfigError where a server's chat API would wrap, in the model's chat template, a prompt docqa has already put
    in one. Checked when the model is loaded, not with the file: --model demo runs in this process instead, and
    retrieval never sends a prompt."""
    if settings.llm.backend in ("openai", "ollama") and settings.llm.api == "chat" and settings.prompt.format in (
            "llama-2-chat", "gguf"):
        raise ConfigError(f"prompt.format {settings.prompt.format} with llm.api chat wraps the prompt twice: the "
                          "server applies the model's chat template to what docqa sends; use prompt.format plain "
                          "(or auto)")


# Each section's class to its key in config.yml (Storage is "store")
SECTION_NAMES = {field.annotation: name for name, field in Settings.model_fields.items()}


def load_settings(path: Path | str | None = None, *, project: Path | str | None = None, **sections: dict) -> Settings:
    """Read ``path``, or the config.yml of the ``project`` folder, into Settings. Without either, the project is
    the current folder.

    A project folder without config.yml means all defaults, with paths relative to that folder. ``sections``
    override the file's values, checked as the file's are: ``load_settings(retrieval={"k": 2})``.
    """
    folder = Path(project) if project else Path.cwd()
    # ~ as the shell would have expanded it (quoted, or after --config=): paths inside the file take it too
    config_path = Path(path).expanduser() if path else folder / CONFIG_NAME
    if not config_path.exists():
        if path:
            raise ConfigError(f"config file not found: {config_path}")
        for other in ("config.yaml", "Config.yml"):
            if (folder / other).is_file():
                # All defaults in its place would build and search elsewhere than the file says, without a word
                raise ConfigError(f"{folder / other} is not read: docqa reads config.yml; rename it, or give "
                                  f"--config {folder / other}")
        settings = _settings({}, sections, "the settings")
        settings._root = folder.resolve()
        # A command's own (``project``: the docqa command's folder, the checkout's scripts'), or the checkout's: the
        # command it advises builds this index. A library caller's elsewhere is no command's (db_build.py builds
        # the checkout's wherever it runs): its advice to build names docqa.build_index(settings)
        if project is not None or settings._root == CHECKOUT.resolve():
            settings._file_index = (_settings({}, {}, "the settings") if sections else settings)._index_part()
        return settings
    try:
        raw = yaml.load(config_path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except DuplicateKeyError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    except IsADirectoryError:
        raise ConfigError(f"{config_path} is a folder, not a settings file: give the file itself, such as "
                          f"{config_path / CONFIG_NAME}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{config_path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{config_path} cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{config_path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{config_path}: expected a mapping of sections at the top level")
    settings = _settings(raw, sections, str(config_path))
    settings._root = config_path.resolve().parent
    settings._file = config_path.resolve()
    settings._file_index = (_settings(raw, {}, str(config_path)) if sections else settings)._index_part()
    return settings


def _settings(raw: dict, sections: dict, source: str) -> Settings:
    """Settings from a config file's mapping with ``sections`` merged over it; ConfigError names what is wrong."""
    merged = dict(raw)
    for name, values in sections.items():
        if not isinstance(values, dict):
            raise ConfigError(f"load_settings({name}=...) takes a mapping of that section's keys, not "
                              f"{type(values).__name__}")
        merged[name] = {**(merged.get(name) or {}), **values}
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(f"{source}{' with the sections given' if sections else ''}: {_describe(exc)}") from None


class DuplicateKeyError(Exception):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping: YAML keeps the last, so a section added at
    the end of config.yml to override a setting silently dropped every setting of the first."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # <<: *defaults may repeat what it merges
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKeyError(f"{key!r} is written twice (lines {seen[key]} and {line}); YAML would "
                                            f"keep only the second: merge them into one")
                seen[key] = line
            except TypeError:  # a key YAML cannot hash: the loader says so itself
                continue
        return super().construct_mapping(node, deep=deep)


def _describe(exc: ValidationError, within: str = "") -> str:
    """The first problem in one line; ``within``: the section whose key the error's location starts from."""
    first = exc.errors()[0]
    key = ".".join(str(part) for part in ([within] if within else []) + list(first["loc"]))
    if first["type"] in ("extra_forbidden", "no_such_attribute"):  # in a file; assigned in a script
        return f"unknown key '{key}'"
    if first.get("input", "") is None:  # `data:` with nothing after it
        return f"'{key}' is empty: give it a value, or remove the line for the default"
    return f"bad value for '{key}': {first['msg']}"


def check_settings(settings, what: str) -> None:
    """InputError where ``settings`` is not a Settings (a config file's path, say)."""
    if not isinstance(settings, Settings):
        raise InputError(f"{what} takes a Settings (docqa.load_settings(path)), not {type(settings).__name__} "
                         f"{settings!r}"[:300])
