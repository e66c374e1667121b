"""A library docqa imports where it is used says, when it is missing, the pinned install that brings it."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

from docqa.errors import MissingDependencyError
from docqa.optional import require

ROOT = Path(__file__).resolve().parents[1]


class Blocked:
    """A meta-path finder for which ``names`` (and the modules under them) are not installed."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


@pytest.fixture
def blocked(monkeypatch):
    """``blocked("fastapi")``: imports of fastapi fail from here on in this test, as where it was never installed."""

    def block(*names: str) -> None:
        for name in [name for name in sys.modules if name.split(".")[0] in names]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setattr(sys, "meta_path", [Blocked(*names), *sys.meta_path])

    return block


def test_an_installed_module_is_imported():
    assert require("json") is sys.modules["json"]


def test_a_missing_extra_names_the_extra_to_install(blocked):
    blocked("openvino")
    with pytest.raises(MissingDependencyError) as raised:
        require("openvino", "bf16")
    assert str(raised.value) == "openvino is not installed: pip install 'docqa[bf16]'"
    assert raised.value.exit_code == 2


def test_a_missing_dependency_of_docqa_itself_is_put_back_by_installing_docqa(blocked):
    blocked("onnxruntime")
    with pytest.raises(MissingDependencyError, match=r"^onnxruntime.quantization is not installed: pip install docqa$"):
        require("onnxruntime.quantization")  # its package is missing: not installed, as said of the package


def test_a_module_whose_own_dependency_is_missing_names_that_one(blocked, tmp_path, monkeypatch):
    (tmp_path / "needs_absent.py").write_text("import absent_library\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    blocked("absent_library")
    with pytest.raises(MissingDependencyError, match=r"^needs_absent cannot be imported \(it needs absent_library, "
                                                     r"which is not installed\): pip install 'docqa\[export\]'$"):
        require("needs_absent", "export")


def test_a_broken_install_is_said_as_such(tmp_path, monkeypatch):
    (tmp_path / "broken_native.py").write_text("raise OSError('libfoo.so: cannot open shared object file')\n",
                                               encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingDependencyError, match=r"^broken_native cannot be imported \(libfoo.so: cannot open "
                                                     r"shared object file\); install the version docqa is tested "
                                                     r"with: pip install docqa$"):
        require("broken_native")


def test_the_web_app_without_fastapi_names_the_server_extra(blocked):
    from docqa.server import create_app
    from docqa.settings import Settings

    blocked("fastapi")
    with pytest.raises(MissingDependencyError, match=r"^fastapi is not installed: pip install 'docqa\[server\]'$"):
        create_app(Settings())


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _required_modules() -> list[tuple[str, str | None, str]]:
    """Every ``require(module[, extra])`` call in src/docqa: (module, extra, file)."""
    calls = []
    for path in sorted((ROOT / "src" / "docqa").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require" and node.args:
                values = [argument.value for argument in node.args]
                calls.append((values[0], values[1] if len(values) > 1 else None, path.name))
    return calls


def test_each_required_module_comes_with_the_extra_its_message_names():
    """A message naming the wrong extra sends the user to an install that does not bring the module."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    distributions = importlib.metadata.packages_distributions()
    calls = _required_modules()
    assert len(calls) >= 10  # the scan found them
    for module, extra, where in calls:
        requirements = project["optional-dependencies"][extra] if extra else project["dependencies"]
        pinned = {_normalized(re.split(r"[=<>!~\[;]", requirement)[0].strip()) for requirement in requirements}
        provided = {_normalized(name) for name in distributions.get(module.split(".")[0], [])}
        assert provided & pinned, f"{where}: require({module!r}, {extra!r}): {sorted(provided)} not in {sorted(pinned)}"


def test_onnxruntime_and_openvino_are_imported_without_their_vendors_telemetry(tmp_path):
    """ONNX Runtime's import keeps a device id and usage events under ~/.cache/Microsoft and sends them to Microsoft;
    OpenVINO's sends a Google Analytics event and keeps a client id under ~/intel: from every build, question and
    server, of a tool whose users keep their work on their own machine. Run with a home of its own, where each
    library leaves its telemetry's files."""
    import os
    import subprocess

    pytest.importorskip("openvino")
    script = ("import sys\nfrom docqa.optional import require\nrequire('onnxruntime')\nrequire('openvino', 'bf16')\n"
              "import openvino.tools.ovc.telemetry_utils as ovc\nprint(ovc.tm.__name__)\n")
    # (OpenVINO sends nothing where it sees a CI job: the check would pass there whatever docqa does)
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("ORT_DISABLE_TELEMETRY", "CI", "TF_BUILD", "JENKINS_URL")}
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**environment, "HOME": str(home)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "openvino.tools.ovc.telemetry_stub"  # the converter's own stub: sends nothing
    assert sorted(str(path.relative_to(home)) for path in home.rglob("*")) == []
    # the same imports without docqa's require leave both libraries' telemetry files: the check above can fail
    plain = subprocess.run([sys.executable, "-c", "import onnxruntime, openvino"], capture_output=True, text=True,
                           timeout=120, env={**environment, "HOME": str(tmp_path)})
    assert plain.returncode == 0 and (tmp_path / ".cache" / "Microsoft").is_dir() and (tmp_path / "intel").is_dir()
