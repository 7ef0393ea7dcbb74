"""The core install and its extras (pyproject.toml): core commands work with every optional package absent, and a
feature whose extra is missing says which one to install (one line, exit 2), never a traceback.

Absence is simulated in a subprocess by putting None in sys.modules for each blocked package: importing it then
raises ModuleNotFoundError, and importlib.util.find_spec reports it missing (as libraries probing for optional
packages expect). Packages that core's own dependencies pull in anyway (pyyaml via transformers, pydantic via
typer, scikit-learn via sentence-transformers) are not blocked: a core install has them.
"""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cinegen.extras import MissingExtra, require

ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2", "COLUMNS": "200"}

# import names of everything the extras add on top of core's dependency closure
SERVER = ["fastapi", "starlette", "uvicorn", "multipart", "python_multipart", "psycopg"]
STUDIO = ["pysubs2", "opentimelineio", "otio_cmx3600_adapter"]
PROVENANCE = ["imwatermark", "cv2", "pywt", "c2pa", "cryptography"]
PEERS = ["diffusers", "accelerate", "peft", "ftfy", "torchao"]
FOOTAGE = ["scenedetect"]
DEV = ["pytest", "ruff", "openai", "httpx", "schemathesis", "hypothesis", "playwright", "webvtt"]
NON_CORE = SERVER + STUDIO + PROVENANCE + PEERS + FOOTAGE + DEV

CLI = "import sys; sys.argv = ['cinegen', *sys.argv[1:]]; import cinegen.cli; cinegen.cli.app()"


def run_blocked(blocked: list[str], code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    prelude = f"import sys\nfor _m in {blocked!r}:\n    sys.modules[_m] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code, *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout, cwd=ROOT)


def one_line_error(result: subprocess.CompletedProcess, extra: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    err = " ".join(result.stderr.split())
    assert f"needs the {extra} extra: pip install 'cinegen[{extra}]'" in err, err
    return err


def test_require_returns_the_module_or_names_the_extra():
    import json
    assert require("json", "studio", "x") is json
    with pytest.raises(MissingExtra, match=r"cinegen frobnicate needs the studio extra: pip install 'cinegen\[studio\]'$"):
        require("no_such_module_for_cinegen", "studio", "cinegen frobnicate")
    assert issubclass(MissingExtra, ValueError)          # the CLI's one error handler reports it


def test_core_imports_and_help_without_any_optional_package():
    code = ("import cinegen.cli, cinegen.pipeline, cinegen.modes, cinegen.requests, cinegen.io.provenance\n"
            "import cinegen.backends.native, cinegen.backends.diffusers, cinegen.estimate\n"
            "import cinegen.eval.run, cinegen.training.train_dit, cinegen.training.train_vae\n" + CLI)
    result = run_blocked(NON_CORE, code, "--help")
    assert result.returncode == 0, result.stderr
    for command in ("generate", "animate", "train", "eval", "serve", "storyboard"):
        assert command in result.stdout


def test_core_generate_without_any_optional_package(tiny_model_dir, tmp_path):
    out = tmp_path / "clip.mp4"
    result = run_blocked(NON_CORE, CLI, "generate", "a red ball", "--model", str(tiny_model_dir), "--seconds", "1",
                         "--steps", "2", "-o", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0


def test_serve_without_fastapi_names_the_server_extra(tmp_path):
    # uvicorn.run is disarmed in case the guard ever stops working: this test must never start a server
    code = "import uvicorn; uvicorn.run = lambda *a, **k: sys.exit(99)\n" + CLI
    result = run_blocked(["fastapi"], code, "serve", "--workers", "0", "--port", "0", "--data-dir", str(tmp_path))
    assert "cinegen serve needs the server extra" in one_line_error(result, "server")


def test_worker_without_the_server_stack_names_the_server_extra(tmp_path):
    one_line_error(run_blocked(SERVER, CLI, "worker", "--data-dir", str(tmp_path)), "server")


def test_storyboard_without_the_studio_stack_names_the_studio_extra(tmp_path):
    result = run_blocked(STUDIO, CLI, "storyboard", str(ROOT / "examples" / "board.yaml"), "--check", "-o", str(tmp_path))
    assert "cinegen storyboard needs the studio extra" in one_line_error(result, "studio")


def test_c2pa_credentials_without_cryptography_names_the_provenance_extra(tmp_path):
    one_line_error(run_blocked(["cryptography"], CLI, "c2pa-credentials", "-o", str(tmp_path / "c2pa")), "provenance")
    assert not (tmp_path / "c2pa").exists()


def test_watermark_and_c2pa_checks_name_the_provenance_extra_before_rendering():
    # the checks `cinegen generate` runs before rendering: a missing extra costs no render
    code = ("from cinegen.io.provenance import check_c2pa_credentials, check_watermark_size\n"
            "for check, args in ((check_watermark_size, (256, 256)), (check_c2pa_credentials, ('a', 'b'))):\n"
            "    try:\n        check(*args)\n    except ValueError as e:\n        print(e)\n")
    result = run_blocked(["imwatermark", "c2pa"], code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "the invisible watermark needs the provenance extra: pip install 'cinegen[provenance]'",
        "C2PA (content credentials) needs the provenance extra: pip install 'cinegen[provenance]'"]


def test_diffusers_folder_without_diffusers_names_the_peers_extra(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    code = f"from cinegen.backends.diffusers import DiffusersBackend\nDiffusersBackend.from_pretrained({str(tmp_path)!r})\n"
    result = run_blocked(PEERS, code)
    assert "MissingExtra" in result.stderr and "needs the peers extra" in result.stderr, result.stderr


def test_pyproject_extras_cover_every_require_call():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(extras) == {"server", "studio", "provenance", "peers", "footage", "dev"}
    assert "cinegen[server,studio,provenance,peers,footage]" in extras["dev"]
    names = lambda reqs: {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in reqs}
    core = names(project["dependencies"])
    assert "torch" in core and "sentence-transformers" not in core
    for extra in ("server", "studio", "provenance", "peers", "footage"):
        assert not names(extras[extra]) & core - {"pydantic", "pyyaml"}, extra
    used = set()
    for path in (ROOT / "src" / "cinegen").rglob("*.py"):
        used |= set(re.findall(r"(?<![\w.])require\(\s*[^,()]+,\s*\"(\w+)\"", path.read_text()))
    assert {"server", "studio", "provenance", "peers"} <= used and used <= set(extras), used
