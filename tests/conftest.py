"""Shared fixtures: tiny configs (run in seconds on a CPU), one text encoder per session, a tiny model folder."""

import importlib.util
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

from cinegen.config import DIT_PRESETS, VAE_PRESETS, FlowConfig
from cinegen.models.dit import VideoDiT
from cinegen.models.vae import VideoVAE
from cinegen.training.checkpoint import save_checkpoint

TOOLS = Path(__file__).parent.parent / "tools"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# prompt embeddings cached on disk (models/text_encoder.py) go to a folder of this session, not the user's cache
os.environ.setdefault("CINEGEN_TEXT_CACHE", tempfile.mkdtemp(prefix="cinegen-text-"))
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def load_script():
    """Imports a file of tools/ (not a package) as a module, for tests of its functions: load_script("name")."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture
def tiny_vae_cfg():
    return VAE_PRESETS["tiny"]


@pytest.fixture
def tiny_dit_cfg():
    return DIT_PRESETS["tiny"]


@pytest.fixture(scope="session")
def text_encoder():
    from cinegen.models.text_encoder import TextEncoder
    return TextEncoder()


def perturb(model: torch.nn.Module, seed: int = 0, std: float = 0.02) -> torch.nn.Module:
    """Zero-initialised heads make an untrained DiT output zeros; noise its weights so outputs depend on inputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A folder with a randomly initialised tiny dit.safetensors + vae.safetensors, like a trained model's."""
    folder = tmp_path_factory.mktemp("tiny_model")
    torch.manual_seed(0)
    vae = VideoVAE(VAE_PRESETS["tiny"])
    dit = perturb(VideoDiT(DIT_PRESETS["tiny"]))
    save_checkpoint(folder / "vae.safetensors", "vae", vae.cfg, vae)
    save_checkpoint(folder / "dit.safetensors", "dit", dit.cfg, dit,
                    extra={"flow": FlowConfig().__dict__, "holdout": ["purple triangle"]})
    return folder


@pytest.fixture(scope="session")
def tiny_pipe(tiny_model_dir):
    from cinegen.pipeline import TextToVideo
    return TextToVideo.from_pretrained(tiny_model_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real uvicorn server for the app, on a free loopback port, in a background thread."""

    def __init__(self, settings):
        import uvicorn

        from cinegen.server.app import create_app
        self.port = free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)




@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """A tiny folder of one's own footage (tests/footage.py): MP4s, a still, every caption convention."""
    from tests.footage import make_footage
    return make_footage(tmp_path_factory.mktemp("footage"))


@pytest.fixture(scope="module")
def bad_footage(tmp_path_factory):
    """The same folder plus a file of each problem; returns (root, {file: words its message holds})."""
    from tests.footage import add_bad_files, make_footage
    root = make_footage(tmp_path_factory.mktemp("bad"))
    return root, add_bad_files(root)


def _saved(tmp_path_factory, name, build):
    """A tiny randomly initialised Diffusers pipeline (tests/peers_tiny.py; local tokenizers, nothing downloaded)
    saved with save_pretrained."""
    pytest.importorskip("diffusers")
    import torch
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(name)
    build().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_wan_dir(tmp_path_factory):
    """A tiny Wan2.1 text-to-video pipeline."""
    from tests.peers_tiny import wan_t2v
    return _saved(tmp_path_factory, "tiny_wan", wan_t2v)


@pytest.fixture(scope="session")
def tiny_ltx_dir(tmp_path_factory):
    """A tiny LTX-Video pipeline with a 4x spatial VAE (footage windows of 32x32 pixels fit its grid)."""
    from tests.peers_tiny import ltx_small_vae
    return _saved(tmp_path_factory, "tiny_ltx", ltx_small_vae)


class _Peers(dict):
    """{name: folder} of tests/peers_tiny.py's tiny Diffusers pipelines, each built and saved on first use."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def __missing__(self, name: str) -> Path:
        from tests.peers_tiny import build_all
        self[name] = build_all(self.folder, [name])[name]
        return self[name]


@pytest.fixture(scope="session")
def peers(tmp_path_factory):
    """Tiny randomly initialised Diffusers folders (tests/peers_tiny.py), built once per session as tests ask."""
    pytest.importorskip("diffusers")
    return _Peers(tmp_path_factory.mktemp("peers"))
