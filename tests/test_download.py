"""download_model.py: which file lands where, and how failures are reported — without a network."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import huggingface_hub
from huggingface_hub import constants as hub_constants
import pytest
import yaml

from docqa.cli import download_main as main
from docqa.download import PROXY_VARIABLES
from tests.support.fake_hub import FakeHub, serve

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def hub_resolves(monkeypatch):
    """The hub's name resolves (the tests fake the network behind it); one test below takes this back."""
    monkeypatch.setattr("docqa.download.resolve_hub", lambda model: None)


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"paths": {"models": "my-models"}}), encoding="utf-8")
    return path


@pytest.fixture
def fake_hub(monkeypatch) -> Iterator[FakeHub]:
    """A hub on loopback, answering as the real one does (tests/support/fake_hub.py); downloads go to it."""
    hub = FakeHub()
    server = serve(hub)
    monkeypatch.setattr(hub_constants, "ENDPOINT", hub.url)
    for name in (*PROXY_VARIABLES, "HTTP_PROXY", "http_proxy"):  # straight to loopback
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("docqa.download.time.sleep", lambda seconds: None)  # the pause before taking a drop up again
    yield hub
    server.shutdown()


def test_downloads_gguf_into_configured_models_folder(config, fake_hub, capsys):
    assert main(["--config", str(config)]) == 0
    models = config.parent / "my-models"
    assert fake_hub.downloads == [{"repo_id": "TheBloke/Llama-2-7B-Chat-GGUF", "filename": "llama-2-7b-chat.Q8_0.gguf"}]
    assert (models / "llama-2-7b-chat.Q8_0.gguf").read_bytes() == fake_hub.content(
        "TheBloke/Llama-2-7B-Chat-GGUF", "llama-2-7b-chat.Q8_0.gguf")
    assert sorted(path.name for path in models.iterdir()) == ["llama-2-7b-chat.Q8_0.gguf"]  # no part, no hub cache
    output = capsys.readouterr().out
    assert f"saved {models / 'llama-2-7b-chat.Q8_0.gguf'}" in output
    # The configuration still points at models/, so the user is told what to set.
    assert "set llm.model_path:" in output


def test_ggml_flag_downloads_the_cards_file(config, fake_hub):
    assert main(["--ggml", "--config", str(config)]) == 0
    assert fake_hub.downloads[0]["repo_id"] == "TheBloke/Llama-2-7B-Chat-GGML"
    assert fake_hub.downloads[0]["filename"] == "llama-2-7b-chat.ggmlv3.q8_0.bin"
    assert (config.parent / "my-models" / "llama-2-7b-chat.ggmlv3.q8_0.bin").is_file()


def test_no_hint_when_configuration_already_points_at_the_file(tmp_path, fake_hub, capsys):
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"llm": {"model_path": "models/llama-2-7b-chat.Q8_0.gguf"}}), encoding="utf-8")
    assert main(["--config", str(config)]) == 0
    assert "set llm.model_path" not in capsys.readouterr().out


def test_present_file_is_not_downloaded_again(config, fake_hub, capsys, tiny_gguf):
    existing = config.parent / "my-models" / "llama-2-7b-chat.Q8_0.gguf"
    existing.parent.mkdir()
    existing.write_bytes(tiny_gguf.read_bytes())
    assert main(["--config", str(config)]) == 0
    assert fake_hub.downloads == []
    output = capsys.readouterr().out
    # llm.model_path still names models/, so the user learns what to set rather than being sent to download again
    assert "already present" in output and f"set llm.model_path: {existing} in the configuration" in output


@pytest.mark.parametrize("content", [b"", b"<html>rate limited</html>"])
def test_a_file_in_the_way_that_is_no_model_is_not_taken_for_one(config, fake_hub, capsys, content):
    """An empty or foreign file at the model's place was 'already present; nothing to download', exit 0."""
    existing = config.parent / "my-models" / "llama-2-7b-chat.Q8_0.gguf"
    existing.parent.mkdir()
    existing.write_bytes(content)
    assert main(["--config", str(config)]) == 2
    assert fake_hub.downloads == [] and existing.read_bytes() == content
    assert capsys.readouterr().err == (f"error: {existing} is there but is not a GGUF or GGML model file (an "
                                       "interrupted copy?); delete it and download again\n")


def test_a_model_file_cut_short_is_not_taken_for_one(config, fake_hub, capsys, tiny_gguf):
    """A copy cut off part way keeps its header: its first bytes alone passed it as 'already present'."""
    whole = tiny_gguf.read_bytes()
    existing = config.parent / "my-models" / "llama-2-7b-chat.Q8_0.gguf"
    existing.parent.mkdir()
    for cut in (len(whole) - 1, len(whole) // 2, 40):  # in the weights, then in the header
        existing.write_bytes(whole[:cut])
        assert main(["--config", str(config)]) == 2
        error = capsys.readouterr().err
        assert fake_hub.downloads == [] and error.count("\n") == 1, error
        assert (f"{existing} is there but cut short ({cut:,} of its {len(whole):,} bytes" in error
                or f"{existing} is there but is not a GGUF or GGML model file" in error), error


def _gguf_header(*entries: bytes, tensors: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, tensors, len(entries)) + b"".join(entries)


def _key(name: str, kind: int, value: bytes) -> bytes:
    return struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", kind) + value


@pytest.mark.parametrize("header", [
    _gguf_header(_key("general.alignment", 4, struct.pack("<I", 0))),  # divided by zero
    _gguf_header(_key("nested", 9, struct.pack("<IQ", 9, 1) * 5000)),  # recursion 5,000 deep
    _gguf_header(_key("tokens", 9, struct.pack("<IQ", 4, 2**60))),  # an array running past the end
], ids=["alignment 0", "nested arrays", "array past the end"])
def test_a_crafted_model_header_is_one_line_not_a_crash(config, fake_hub, capsys, header):
    """An alignment of 0, arrays nested 5,000 deep or an array longer than the file: ZeroDivisionError,
    RecursionError, or 'cut short (49 of its 18,446,744,073,709,551,680 bytes)'."""
    existing = config.parent / "my-models" / "llama-2-7b-chat.Q8_0.gguf"
    existing.parent.mkdir()
    existing.write_bytes(header)
    assert main(["--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {existing} is there but is not a GGUF or GGML model file") and fake_hub.downloads == []


def test_the_tensor_sizes_docqa_knows_are_llama_cpp_s():
    """The table written out in docqa (gguf, llama.cpp's reader, is a test and bench package only) against the
    gguf package's own."""
    gguf = pytest.importorskip("gguf")
    from docqa.llm.gguf_size import _TYPE_SIZES

    theirs = {kind.value: sizes for kind, sizes in gguf.GGML_QUANT_SIZES.items()}
    assert _TYPE_SIZES == theirs


@pytest.mark.parametrize("blocking", ["folder", "dangling link"])
def test_a_folder_or_a_dangling_link_where_the_model_would_go_fails_before_the_hub_is_asked(
        config, fake_hub, capsys, blocking):
    target = config.parent / "my-models" / "llama-2-7b-chat.Q8_0.gguf"
    target.parent.mkdir()
    if blocking == "folder":
        target.mkdir()
    else:
        target.symlink_to(config.parent / "elsewhere.gguf")
    assert main(["--config", str(config)]) == 2
    what = "a folder" if blocking == "folder" else "a link to nothing"
    assert fake_hub.downloads == [] and capsys.readouterr().err == (
        f"error: {target} is {what}, where the model file would go; move it away and download again\n")


def test_a_models_folder_under_a_file_names_that_file(tmp_path, fake_hub, capsys):
    (tmp_path / "mfile").write_text("not a folder", encoding="utf-8")
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"paths": {"models": "mfile/sub"}}), encoding="utf-8")
    assert main(["--config", str(config)]) == 2
    assert (f"paths.models is {tmp_path / 'mfile' / 'sub'}, under {tmp_path / 'mfile'}, which is a file, not a "
            "folder") in capsys.readouterr().err


def test_a_models_folder_that_is_a_file_fails_before_the_hub_is_asked(config, fake_hub, capsys):
    (config.parent / "my-models").write_text("not a folder", encoding="utf-8")
    assert main(["--config", str(config)]) == 2
    assert fake_hub.downloads == []
    assert "which is a file, not a folder; point paths.models in config.yml at a folder" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--ggml", "--file", "x.gguf"], "--file goes with --repo, not --ggml"),
    (["--repo", "../..", "--file", "x.gguf"], "--repo must name a repository as OWNER/NAME, not '../..'"),
    # what the hub refuses is refused before it is asked (it answered 'Repo id must use alphanumeric chars')
    (["--repo", "a/..b", "--file", "x.gguf"], "--repo must name a repository as OWNER/NAME, not 'a/..b'"),
    (["--repo", "..a/b", "--file", "x.gguf"], "--repo must name a repository as OWNER/NAME, not '..a/b'"),
    (["--repo", "ünï/cødé", "--file", "x.gguf"], "--repo must name a repository as OWNER/NAME, not 'ünï/cødé'"),
    (["--repo", "o/" + "n" * 97, "--file", "x.gguf"], "--repo must name a repository as OWNER/NAME"),
    (["--repo", "a/b", "--file", ".gguf"], "--file must name a .gguf file at the top of the repository, not '.gguf'"),
    (["--repo", "a/b", "--file", "..\\x.gguf"], "--file must name a .gguf file at the top of the repository"),
])
def test_options_that_would_be_ignored_or_escape_are_refused(config, fake_hub, capsys, argv, message):
    assert main([*argv, "--config", str(config)]) == 2
    assert fake_hub.downloads == [] and message in capsys.readouterr().err


def test_progress_goes_to_stderr_and_the_result_to_stdout(config, fake_hub, capsys):
    assert main(["--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("downloading llama-2-7b-chat.Q8_0.gguf from TheBloke/Llama-2-7B-Chat-GGUF into ")
    assert "downloading" not in out and out.startswith("saved ")


def test_network_failure_is_one_line_on_stderr(config, fake_hub, monkeypatch, capsys):
    """Nothing listening where the hub should be: one line with the reason, at once (no retries of a dead network)."""
    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")
    assert main(["--config", str(config)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("downloading llama-2-7b-chat.Q8_0.gguf")  # the progress line, then one for the failure
    assert error.splitlines()[1:] == ["error: download of llama-2-7b-chat.Q8_0.gguf failed: [Errno 111] Connection "
                                      "refused; nothing was kept"]


def test_a_proxy_that_fails_is_named(config, fake_hub, monkeypatch, capsys):
    """Through a proxy that was down, the download said "Connection refused", as though the hub had refused."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the fake hub is plain http; the real one, HTTPS_PROXY
    assert main(["--config", str(config)]) == 1
    assert capsys.readouterr().err.splitlines()[1:] == [
        "error: download of llama-2-7b-chat.Q8_0.gguf failed: the proxy http://127.0.0.1:9 (from the environment) "
        "failed: [Errno 111] Connection refused; check it, or unset it; nothing was kept"]
    assert fake_hub.downloads == []


def test_a_dropped_connection_goes_on_from_where_it_stopped(config, fake_hub, capsys):
    """huggingface_hub's download deleted what it had fetched on any failure: a 7 GB file started again from 0."""
    fake_hub.drop_after = [1000, 500]
    assert main(["--config", str(config)]) == 0
    models = config.parent / "my-models"
    whole = fake_hub.content("TheBloke/Llama-2-7B-Chat-GGUF", "llama-2-7b-chat.Q8_0.gguf")
    assert (models / "llama-2-7b-chat.Q8_0.gguf").read_bytes() == whole
    assert fake_hub.ranges == ["", "bytes=1000-", "bytes=1500-"]
    err = capsys.readouterr().err
    assert "the connection dropped (" in err and "going on from 1,000 bytes" in err
    assert not (models / "llama-2-7b-chat.Q8_0.gguf.part").exists()


def test_an_interrupted_download_is_kept_and_the_next_run_goes_on(config, fake_hub, monkeypatch, capsys):
    fake_hub.drop_after = [1000] * 10  # the connection keeps dropping at once: the run gives up, keeping its bytes
    monkeypatch.setattr("docqa.download.ATTEMPTS", 2)
    assert main(["--config", str(config)]) == 1
    part = config.parent / "my-models" / "llama-2-7b-chat.Q8_0.gguf.part"
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: download of llama-2-7b-chat.Q8_0.gguf failed: peer closed connection without sending complete message "
        f"body (received 1000 bytes, expected 1052); the 2.0 KB fetched are kept in {part}: the same command goes on "
        "from there")
    assert part.stat().st_size == 2000
    fake_hub.drop_after = []
    assert main(["--config", str(config)]) == 0
    assert "going on from the 2.0 KB fetched before" in capsys.readouterr().err
    assert fake_hub.ranges[-1] == "bytes=2000-" and not part.exists()
    assert (config.parent / "my-models" / "llama-2-7b-chat.Q8_0.gguf").read_bytes() == fake_hub.content(
        "TheBloke/Llama-2-7B-Chat-GGUF", "llama-2-7b-chat.Q8_0.gguf")


def test_ctrl_c_keeps_what_came_and_says_so(config, fake_hub, monkeypatch, capsys):
    def stopped(model, partial):
        partial.write_bytes(b"GGUF" + bytes(3000))
        raise KeyboardInterrupt

    monkeypatch.setattr("docqa.download._fetch", stopped)
    assert main(["--config", str(config)]) == 130
    part = config.parent / "my-models" / "llama-2-7b-chat.Q8_0.gguf.part"
    assert capsys.readouterr().err.splitlines()[-2:] == [
        f"the 2.9 KB fetched are kept in {part}: the same command goes on from there", "interrupted"]


def test_a_second_download_of_the_same_file_waits_for_none_and_spoils_nothing(config, fake_hub, capsys):
    """Two at once wrote into one part; the first to finish found the digest wrong and deleted what both fetched."""
    import fcntl

    part = config.parent / "my-models" / "llama-2-7b-chat.Q8_0.gguf.part"
    part.parent.mkdir()
    part.write_bytes(b"GGUF" + bytes(500))
    with open(part, "ab") as other:  # another run's lock
        fcntl.flock(other, fcntl.LOCK_EX)
        assert main(["--config", str(config)]) == 6
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: another download of llama-2-7b-chat.Q8_0.gguf into {part.parent} is under way; wait for it to finish")
    assert part.read_bytes() == b"GGUF" + bytes(500) and fake_hub.ranges == []
    assert main(["--config", str(config)]) == 1  # once it is free: taken up (this part is no beginning of the file)
    assert "does not match the hub's SHA-256" in capsys.readouterr().err


def test_a_part_longer_than_the_file_starts_again_in_the_same_run(config, fake_hub, capsys):
    """It said 'starting again' and stopped (exit 1), the part deleted."""
    whole = fake_hub.content("TheBloke/Llama-2-7B-Chat-GGUF", "llama-2-7b-chat.Q8_0.gguf")
    part = config.parent / "my-models" / "llama-2-7b-chat.Q8_0.gguf.part"
    part.parent.mkdir()
    part.write_bytes(whole + bytes(100))
    assert main(["--config", str(config)]) == 0
    assert fake_hub.ranges == [f"bytes={len(whole) + 100}-", ""]
    assert (part.parent / "llama-2-7b-chat.Q8_0.gguf").read_bytes() == whole and not part.exists()


@pytest.mark.parametrize("status, message", [
    (403, "the storage the hub sends to refused the file (HTTP 403): its link may have expired; run the command again"),
    (503, "the storage the hub sends to answered HTTP 503"),
])
def test_the_storages_refusal_is_not_taken_for_the_hubs_and_keeps_the_part(config, fake_hub, capsys, status, message):
    """A 403 from the storage the hub redirects to was said to be a gated repository; a 503 did not say the part
    was kept (it is asked again, ATTEMPTS times in all)."""
    fake_hub.bytes_statuses = [status] * 5
    part = config.parent / "my-models" / "llama-2-7b-chat.Q8_0.gguf.part"
    part.parent.mkdir()
    part.write_bytes(b"GGUF" + bytes(2000))
    assert main(["--config", str(config)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: download of llama-2-7b-chat.Q8_0.gguf failed: {message}; the 2.0 KB fetched are kept in {part}: "
        "the same command goes on from there")
    assert part.stat().st_size == 2004


def test_a_server_busy_for_a_moment_is_asked_again(config, fake_hub, capsys):
    """A 503 ended the run at once, although nothing was wrong a second later."""
    fake_hub.bytes_statuses = [503]
    assert main(["--config", str(config)]) == 0
    assert "(the storage the hub sends to answered HTTP 503); going on from 0 bytes" in capsys.readouterr().err


def test_a_gated_repository_reached_through_a_rename_is_said_to_be_gated(config, fake_hub, capsys):
    """The hub redirects a renamed repository to its new name: a redirect alone made its 403 the storage's."""
    fake_hub.moved, fake_hub.gated = {"old/repo": "gated/repo"}, {"gated/repo"}
    assert main(["--repo", "old/repo", "--file", "a.gguf", "--config", str(config)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: download of a.gguf failed: old/repo is gated: accept its terms on its page on the hub, then set "
        "HF_TOKEN to an access token of yours")


def test_a_drop_after_starting_again_is_taken_up_as_any_other(config, fake_hub, capsys):
    whole = fake_hub.content("TheBloke/Llama-2-7B-Chat-GGUF", "llama-2-7b-chat.Q8_0.gguf")
    part = config.parent / "my-models" / "llama-2-7b-chat.Q8_0.gguf.part"
    part.parent.mkdir()
    part.write_bytes(whole + bytes(100))
    fake_hub.drop_after = [1000]
    assert main(["--config", str(config)]) == 0
    assert fake_hub.ranges == [f"bytes={len(whole) + 100}-", "", "bytes=1000-"]
    err = capsys.readouterr().err
    assert "the part kept was longer than the file, so no part of it: starting from the beginning" in err
    assert (part.parent / "llama-2-7b-chat.Q8_0.gguf").read_bytes() == whole


def test_a_part_that_is_already_whole_is_not_fetched_again(config, fake_hub):
    whole = fake_hub.content("TheBloke/Llama-2-7B-Chat-GGUF", "llama-2-7b-chat.Q8_0.gguf")
    part = config.parent / "my-models" / "llama-2-7b-chat.Q8_0.gguf.part"
    part.parent.mkdir()
    part.write_bytes(whole)
    assert main(["--config", str(config)]) == 0
    assert fake_hub.ranges == [f"bytes={len(whole)}-"]  # answered 416: nothing more to send
    assert (config.parent / "my-models" / "llama-2-7b-chat.Q8_0.gguf").read_bytes() == whole


def test_a_file_that_does_not_match_the_hubs_digest_is_not_kept(config, fake_hub, capsys):
    fake_hub.wrong_digest = True
    assert main(["--config", str(config)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: download of llama-2-7b-chat.Q8_0.gguf failed: the file that came does not match the hub's SHA-256 "
        "(damaged on the way); it was deleted: download again")
    assert list((config.parent / "my-models").iterdir()) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--repo", "missing/repo", "--file", "a.gguf"], "no repository missing/repo on the hub (or it is private: "
                                                         "set HF_TOKEN to a token that may read it); check --repo"),
        (["--repo", "some/repo-GGUF", "--file", "missing.gguf"],
         "some/repo-GGUF has no file missing.gguf; check --file against the repository's files"),
        (["--repo", "gated/repo", "--file", "a.gguf"],
         "gated/repo is gated: accept its terms on its page on the hub, then set HF_TOKEN to an access token of yours"),
    ],
)
def test_the_hubs_refusals_say_which_of_repository_file_or_access(config, fake_hub, capsys, argv, message):
    """A wrong repository said 'check your connection', a gated one a bare '401 Client Error.'"""
    fake_hub.gated = {"gated/repo"}
    assert main([*argv, "--config", str(config)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"error: download of {argv[-1]} failed: {message}"
    assert list((config.parent / "my-models").iterdir()) == []


def test_offline_mode_says_so(config, fake_hub, monkeypatch, capsys):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    assert main(["--config", str(config)]) == 1
    assert capsys.readouterr().err == ("error: download of llama-2-7b-chat.Q8_0.gguf failed: HF_HUB_OFFLINE is set, "
                                       "which forbids downloads; unset it to download\n")
    assert fake_hub.downloads == []


def test_offline_the_download_fails_at_once_in_one_line(config, monkeypatch, capsys):
    import socket

    import docqa.download

    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.undo()  # the real resolve_hub, with the name lookup failing as it does offline
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr("docqa.download._fetch", lambda *args: pytest.fail("no lookup should follow"))
    for name in ("HF_HUB_OFFLINE", *docqa.download.PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    assert main(["--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: download of llama-2-7b-chat.Q8_0.gguf failed: cannot resolve ")
    assert err.endswith("(Name or service not known); is this machine online?\n") and err.count("\n") == 1


def test_missing_huggingface_hub_says_how_to_install(config, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    assert main(["--config", str(config)]) == 2
    assert capsys.readouterr().err == "error: huggingface_hub is not installed: pip install docqa\n"


def test_missing_config_file_is_a_config_error(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "absent.yml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_script_runs_from_a_fresh_checkout(config):
    """The top-level script finds src/ by itself: no install, no PYTHONPATH, no network needed."""
    existing = config.parent / "my-models" / "llama-2-7b-chat.ggmlv3.q8_0.bin"
    existing.parent.mkdir()
    existing.write_bytes(b"tjgg")
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "download_model.py"), "--ggml", "--config", str(config)],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "already present" in result.stdout


def test_the_usage_line_of_the_help_runs_as_shown(config, fake_hub, capsys):
    """It showed "download_model.py download [-h] ...", and that command was refused ("unrecognized arguments")."""
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: download_model.py download [-h]")
    assert main(["download", "--config", str(config)]) == 0
    assert fake_hub.downloads[0]["filename"] == "llama-2-7b-chat.Q8_0.gguf"


@pytest.mark.parametrize("quant", ["Q2_K", "Q4_K_M", "Q8_0"])
def test_quant_downloads_that_quantization(config, fake_hub, quant):
    assert main(["--quant", quant, "--config", str(config)]) == 0
    assert fake_hub.downloads[0]["repo_id"] == "TheBloke/Llama-2-7B-Chat-GGUF"
    assert fake_hub.downloads[0]["filename"] == f"llama-2-7b-chat.{quant}.gguf"


def test_every_published_quantization_from_q2_k_to_q8_0_is_offered():
    from docqa.llm.catalog import QUANTIZATIONS

    assert list(QUANTIZATIONS) == ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_K_S", "Q4_K_M", "Q5_0",
                                   "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0"]
    sizes = [quant.size_gb for quant in QUANTIZATIONS.values()]
    assert sizes == sorted(sizes) and all(quant.ram_gb > quant.size_gb for quant in QUANTIZATIONS.values())


def test_unknown_quantization_is_refused_with_the_choices(config, fake_hub, capsys):
    assert main(["--quant", "Q4_K_X", "--config", str(config)]) == 2
    assert fake_hub.downloads == []
    assert "Q4_K_M" in capsys.readouterr().err


def test_repo_and_file_download_any_gguf_chat_model(config, fake_hub, capsys):
    repo, name = "TheBloke/Mistral-7B-Instruct-v0.2-GGUF", "mistral-7b-instruct-v0.2.Q4_K_M.gguf"
    assert main(["--repo", repo, "--file", name, "--config", str(config)]) == 0
    assert fake_hub.downloads == [{"repo_id": repo, "filename": name}]
    assert (config.parent / "my-models" / name).is_file()
    assert "and prompt.format: gguf" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--repo", "someone/model-GGUF"], "--repo and --file go together"),
        (["--file", "model.Q4_K_M.gguf"], "--repo and --file go together"),
        (["--repo", "someone/model-GGUF", "--file", "model.safetensors"], "--file must name a .gguf file"),
        (["--repo", "bad", "--file", "x.gguf"], "--repo must name a repository as OWNER/NAME, not 'bad'"),
        (["--repo", "a/b/c", "--file", "x.gguf"], "--repo must name a repository as OWNER/NAME"),
    ],
)
def test_incomplete_repo_choice_is_a_one_line_error(config, fake_hub, capsys, argv, message):
    assert main([*argv, "--config", str(config)]) == 2
    assert fake_hub.downloads == []
    error = capsys.readouterr().err
    assert error.startswith(f"error: {message}") and error.count("\n") == 1


def test_quant_and_repo_cannot_be_combined(config, fake_hub):
    assert main(["--quant", "Q4_K_M", "--repo", "someone/model-GGUF", "--file", "m.gguf", "--config", str(config)]) == 2
    assert fake_hub.downloads == []


@pytest.mark.parametrize(
    ("model_path", "command"),
    [
        ("models/llama-2-7b-chat.Q8_0.gguf", "python download_model.py"),
        ("models/llama-2-7b-chat.Q4_K_M.gguf", "python download_model.py --quant Q4_K_M"),
        ("models/llama-2-7b-chat.ggmlv3.q8_0.bin", "python download_model.py --ggml"),
        ("models/mistral-7b-instruct-v0.2.Q4_K_M.gguf",
         "python download_model.py --repo OWNER/REPOSITORY --file mistral-7b-instruct-v0.2.Q4_K_M.gguf"),
    ],
)
def test_download_command_for_a_missing_model(model_path, command):
    from docqa.llm.catalog import download_command

    assert download_command(Path(model_path)) == command


def test_fetch_model_checks_what_is_there_for_a_python_caller(fake_hub, tmp_path):
    """Only the command line checked the file already in place and the models folder: from Python an empty file
    counted as the model, and a models folder that is a file failed deep inside the download."""
    from docqa.download import fetch_model
    from docqa.errors import ConfigError, InputError
    from docqa.llm.catalog import GGUF_MODEL

    folder = tmp_path / "models"
    assert fetch_model(GGUF_MODEL, folder) == (folder / GGUF_MODEL.filename, True)
    (folder / GGUF_MODEL.filename).write_bytes(b"")
    with pytest.raises(InputError, match="is there but is not a GGUF or GGML model file"):
        fetch_model(GGUF_MODEL, folder)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ConfigError, match="which is a file, not a folder"):
        fetch_model(GGUF_MODEL, tmp_path / "a-file")
