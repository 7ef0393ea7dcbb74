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


