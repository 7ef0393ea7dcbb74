"""The service as studios use it: the official `openai` SDK against a real uvicorn server on loopback."""

import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import av
import numpy as np
import pytest
from PIL import Image

from cinegen.server.app import ModelSpec, ServerSettings, create_app
from cinegen.server.store import JobStore
from cinegen.server.worker import Worker
from tests.conftest import Server

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_model_dir):
    data = tmp_path_factory.mktemp("service")
    models = {"cinegen-default": ModelSpec(tiny_model_dir, sizes=("32x32", "64x64"), seconds=("1", "2")),
              "text-only": ModelSpec(tiny_model_dir, sizes=("32x32",), seconds=("1",), modes=("text",))}
    settings = ServerSettings(data_dir=data, models=models, api_keys={"key-a": "studio-a", "key-b": "studio-b"},
                              aliases={"sora-2-pro": "text-only"})
    server = Server(settings)
    stop = threading.Event()
    worker = Worker(data, {"cinegen-default": tiny_model_dir, "text-only": tiny_model_dir}, steps=2)
    thread = threading.Thread(target=worker.run_forever, kwargs={"poll": 0.1, "stop": stop}, daemon=True)
    thread.start()
    yield server, data, JobStore(data / "jobs.sqlite")
    stop.set()
    thread.join(timeout=30)
    server.stop()


def client(service, key="key-a"):
    return openai.OpenAI(base_url=service[0].url + "/v1", api_key=key, max_retries=0)


def test_sdk_create_poll_download_gives_a_valid_mp4(service, tmp_path):
    c = client(service)
    video = c.videos.create_and_poll(prompt="a large red ball bounces on a black background", size="32x32", seconds="1",
                                     poll_interval_ms=100)
    assert video.status == "completed" and video.progress == 100 and video.object == "video"
    assert video.size == "32x32" and video.seconds == "1" and isinstance(video.created_at, int)
    assert video.completed_at >= video.created_at and video.expires_at > video.created_at and video.error is None
    content = c.videos.download_content(video.id)
    path = tmp_path / "out.mp4"
    path.write_bytes(content.content)
    with av.open(str(path)) as f:
        assert sum(1 for _ in f.decode(video=0)) == 9
    thumb = c.videos.download_content(video.id, variant="thumbnail")
    assert Image.open(io.BytesIO(thumb.content)).format == "WEBP"
    sheet = c.videos.download_content(video.id, variant="spritesheet")
    assert Image.open(io.BytesIO(sheet.content)).format == "JPEG"


def test_poll_header_and_json_create(service):
    import httpx
    r = httpx.post(service[0].url + "/v1/videos", headers={"Authorization": "Bearer key-a"},
                   json={"prompt": "a small blue box falls on a gray background", "size": "32x32", "seconds": "1"})
    assert r.status_code == 200 and r.headers["openai-poll-after-ms"] == "500"
    assert r.json()["status"] in ("queued", "in_progress") and r.json()["remixed_from_video_id"] is None


def test_list_pagination_and_isolation_between_keys(service):
    a, b = client(service, "key-a"), client(service, "key-b")
    ids = [b.videos.create(prompt=f"a large green ring spins on a sky background {i}", size="32x32", seconds="1").id
           for i in range(3)]
    page = b.videos.list(limit=2, order="asc")
    assert [v.id for v in page.data] == ids[:2] and page.has_more
    rest = b.videos.list(limit=2, order="asc", after=ids[1])
    assert [v.id for v in rest.data] == ids[2:] and not rest.has_more
    assert not set(ids) & {v.id for v in a.videos.list(limit=100).data}
    with pytest.raises(openai.NotFoundError):
        a.videos.retrieve(ids[0])


def test_delete_removes_row_and_files(service):
    c = client(service)
    v = c.videos.create_and_poll(prompt="a small red ball stays still on a black background", size="32x32", seconds="1",
                                 poll_interval_ms=100)
    folder = service[1] / "videos" / v.id
    assert (folder / "video.mp4").exists()
    deleted = c.videos.delete(v.id)
    assert deleted.deleted and deleted.object == "video.deleted" and deleted.id == v.id
    assert not folder.exists()
    with pytest.raises(openai.NotFoundError):
        c.videos.retrieve(v.id)


def frames_of(data: bytes, tmp_path, name="clip.mp4") -> np.ndarray:
    path = tmp_path / name
    path.write_bytes(data)
    with av.open(str(path)) as f:
        return np.stack([fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)])


def data_url(color, size=40) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), color, np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_an_unmodified_sora_call_renders_at_the_model_scale_and_resizes(service, tmp_path):
    """model="sora-2", no size, no seconds (OpenAI's defaults: 720x1280, 4 s) on a model that draws 32x32."""
    c = client(service)
    v = c.videos.create_and_poll(model="sora-2", prompt="a large red ball bounces on a black background",
                                 poll_interval_ms=100)
    assert (v.status, v.model, v.size, v.seconds) == ("completed", "sora-2", "720x1280", "4")
    assert v.rendered_size == "24x40"          # ~1024 pixels like 32x32, ~9:16, on the tiny model's 8-pixel grid
    frames = frames_of(c.videos.download_content(v.id).content, tmp_path)
    assert frames.shape == (33, 1280, 720, 3)          # 4 s at 8 fps on the 1 + 4k grid, Lanczos-resized
    dated = c.videos.create(model="sora-2-2025-12-08", prompt="a small blue box", size="1792x1024", seconds="8")
    assert dated.model == "sora-2-2025-12-08" and dated.rendered_size == "40x24" and dated.seconds == "8"
    assert c.videos.delete(dated.id).deleted                 # not rendered: the next tests need the worker
    with pytest.raises(openai.BadRequestError) as e:
        c.videos.create(model="sora-3", prompt="x")
    assert e.value.body["param"] == "model" and "sora-2" in e.value.body["message"]


def test_every_body_shape_the_sdk_sends(service, tmp_path):
    """input_reference as {"image_url": data URL} and edit and extension by {"id": ...}: the SDK types allow
    them but only sends them through extra_body, as multipart bracket fields (input_reference[image_url],
    video[id]); plain JSON too; and a prompt of OpenAI's full length."""
    c = client(service)
    v = c.videos.create(prompt="a gray square", size="32x32", seconds="1",
                        extra_body={"input_reference": {"image_url": data_url((200, 40, 40))}})
    v = c.videos.poll(v.id, poll_interval_ms=100)
    assert v.status == "completed"
    first = frames_of(c.videos.download_content(v.id).content, tmp_path)[0].reshape(-1, 3).mean(0)
    assert abs(first - (200, 40, 40)).max() < 25          # the still is the first frame
    import httpx
    r = httpx.post(service[0].url + "/v1/videos", headers={"Authorization": "Bearer key-a"},
                   json={"prompt": "x", "size": "32x32", "seconds": "1",
                         "input_reference": {"image_url": data_url((0, 0, 200))}})
    assert r.status_code == 200 and json.loads(service[2].get(r.json()["id"])["params"])["input_reference"]
    edit = c.videos.edit(prompt="a large yellow ball moves right on a black background", video=openai.omit,
                         extra_body={"video": {"id": v.id}})
    assert edit.remixed_from_video_id == v.id and (edit.size, edit.seconds) == ("32x32", "1")
    ext = c.videos.extend(prompt="the square keeps still", seconds="1", video=openai.omit,
                          extra_body={"video": {"id": v.id}})
    assert ext.remixed_from_video_id == v.id and ext.seconds == "2"   # the stitched total, as OpenAI reports it
    long = "a large red ball bounces on a black background. " * 650
    assert 31000 < len(long) <= 32000
    assert c.videos.create(prompt=long, size="32x32", seconds="1").status == "queued"
    with pytest.raises(openai.BadRequestError):
        c.videos.create(prompt="x" * 32001, size="32x32", seconds="1")
    for job in (edit, ext):
        assert c.videos.poll(job.id, poll_interval_ms=100).status == "completed"
    assert len(frames_of(c.videos.download_content(ext.id).content, tmp_path)) == 17   # 9 + 8 frames


def test_characters_are_made_fetched_and_used(service, tmp_path):
    c = client(service)
    clip = tmp_path / "subject.mp4"
    from cinegen.io.video import write_mp4
    write_mp4(np.full((9, 32, 32, 3), (30, 180, 60), np.uint8), clip, 8)
    made = c.videos.create_character(name="Gus", video=clip.open("rb"))
    assert made.id.startswith("char_") and made.name == "Gus" and isinstance(made.created_at, int)
    got = c.videos.get_character(made.id)
    assert (got.id, got.name, got.created_at) == (made.id, made.name, made.created_at)
    with pytest.raises(openai.NotFoundError):
        client(service, "key-b").videos.get_character(made.id)                # another key's character
    v = c.videos.create(prompt="Gus stands still", size="32x32", seconds="1", extra_body={"characters": [{"id": made.id}]})
    assert c.videos.poll(v.id, poll_interval_ms=100).status == "completed"
    first = frames_of(c.videos.download_content(v.id).content, tmp_path)[0].reshape(-1, 3).mean(0)
    assert abs(first - (30, 180, 60)).max() < 25          # the character's still conditions the first frame
    with pytest.raises(openai.BadRequestError) as e:       # sora-2-pro maps to a text-only model here
        c.videos.create(model="sora-2-pro", prompt="Gus", size="32x32", seconds="1",
                        extra_body={"characters": [{"id": made.id}]})
    assert e.value.body["param"] == "characters" and "image conditioning" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        c.videos.create(prompt="Gus", extra_body={"characters": [{"id": made.id}, {"id": made.id}]})


def test_request_ids_and_poll_header(service):
    c = client(service)
    raw = c.videos.with_raw_response.list(limit=1)
    assert raw.headers["x-request-id"].startswith("req_")
    import httpx
    r = httpx.get(service[0].url + "/v1/videos/video_missing", headers={"Authorization": "Bearer key-a",
                                                                         "x-request-id": "mine-1"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "mine-1"


def test_remix_extension_and_edit(service, tmp_path):
    c = client(service)
    src = c.videos.create_and_poll(prompt="a large red ball moves right on a black background", size="32x32",
                                   seconds="1", poll_interval_ms=100)
    remix = c.videos.remix(src.id, prompt="a large blue ball moves right on a black background")
    assert remix.remixed_from_video_id == src.id
    assert c.videos.poll(remix.id, poll_interval_ms=100).status == "completed"
    # JSON {"video": {"id": ...}} (this SDK version only sends files for `video`, so use plain HTTP here)
    import httpx
    r = httpx.post(service[0].url + "/v1/videos/extensions", headers={"Authorization": "Bearer key-a"},
                   json={"prompt": "the ball keeps going", "seconds": "1", "video": {"id": src.id}})
    assert r.status_code == 200 and r.json()["remixed_from_video_id"] == src.id
    ext = c.videos.poll(r.json()["id"], poll_interval_ms=100)
    assert ext.status == "completed"
    path = tmp_path / "ext.mp4"
    path.write_bytes(c.videos.download_content(ext.id).content)
    with av.open(str(path)) as f:
        assert sum(1 for _ in f.decode(video=0)) == 17                    # 9 original + 8 new frames
    upload = tmp_path / "src.mp4"
    upload.write_bytes(c.videos.download_content(src.id).content)
    edit = c.videos.edit(prompt="a large yellow ball moves right on a black background", video=upload.open("rb"))
    assert c.videos.poll(edit.id, poll_interval_ms=100).status == "completed"
    ext2 = c.videos.extend(prompt="the ball keeps going", seconds="1", video=upload.open("rb"))
    assert c.videos.poll(ext2.id, poll_interval_ms=100).status == "completed"


def test_image_upload_animates_and_bad_uploads_are_rejected(service, tmp_path):
    c = client(service)
    png = tmp_path / "still.png"
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(png)
    v = c.videos.create(prompt="a gray square", size="32x32", seconds="1", input_reference=png.open("rb"))
    assert c.videos.poll(v.id, poll_interval_ms=100).status == "completed"
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"definitely not an image")
    with pytest.raises(openai.BadRequestError) as e:
        c.videos.create(prompt="x", size="32x32", seconds="1", input_reference=junk.open("rb"))
    assert e.value.body["param"] == "input_reference"


@pytest.mark.parametrize("fields, param, needle", [
    ({"size": "1920x1080"}, "size", "32x32"), ({"seconds": "3"}, "seconds", "allowed"),
    ({"model": "sora-9"}, "model", "cinegen-default"), ({"model": {"": None}}, "model", "unknown model"),
    ({"prompt": ""}, "prompt", "prompt")])
def test_bad_requests_are_400_with_openai_error_shape(service, fields, param, needle):
    import httpx
    body = {"prompt": "a red ball", "size": "32x32", "seconds": "1", **fields}
    r = httpx.post(service[0].url + "/v1/videos", headers={"Authorization": "Bearer key-a"}, json=body)
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] == param and needle in err["message"]
    assert set(err) == {"message", "type", "param", "code"}


def test_missing_or_wrong_key_is_401(service):
    with pytest.raises(openai.AuthenticationError):
        client(service, "nope").videos.list()


def test_web_page_is_served_without_cdn(service):
    import httpx
    html = httpx.get(service[0].url + "/").text
    assert "<textarea" in html and "/v1/videos" in html
    assert "cdn" not in html.lower() and "<script src" not in html and "https://" not in html


def test_worker_killed_mid_job_is_requeued_and_completed(tmp_path, tiny_model_dir):
    """A worker process dies (SIGKILL) while rendering; after a restart the job completes. Nothing is lost."""
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.create("local", "cinegen-default", "a large red ball bounces on a black background", "2", "32x32",
                       "create", {})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "cinegen.cli", "worker", "--data-dir", str(tmp_path), "--model",
           f"cinegen-default={tiny_model_dir}", "--stale-after", "2"]
    first = subprocess.Popen(cmd + ["--steps", "400"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (store.get(job["id"])["status"] == "in_progress" and store.get(job["id"])["progress"] > 0):
        time.sleep(0.2)
    assert store.get(job["id"])["status"] == "in_progress"
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = subprocess.Popen(cmd + ["--steps", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and store.get(job["id"])["status"] != "completed":
            time.sleep(0.3)
    finally:
        second.kill()
        second.wait()
    assert store.get(job["id"])["status"] == "completed"
    assert (tmp_path / "videos" / job["id"] / "video.mp4").stat().st_size > 0


def test_api_keys_from_file_and_env(tmp_path, monkeypatch):
    from cinegen.server.app import load_api_keys
    f = tmp_path / "keys.json"
    f.write_text(json.dumps({"keys": {"k1": "studio-1"}}))
    monkeypatch.setenv("CINEGEN_API_KEYS", "k2:studio-2,k3")
    assert load_api_keys(f) == {"k1": "studio-1", "k2": "studio-2", "k3": "k3"}


def test_oversized_uploads_are_refused(tmp_path, tiny_model_dir):
    from fastapi.testclient import TestClient
    settings = ServerSettings(data_dir=tmp_path, models={"cinegen-default": ModelSpec(tiny_model_dir, sizes=("32x32",))},
                              max_upload_bytes=1000)
    c = TestClient(create_app(settings))
    r = c.post("/v1/videos", data={"prompt": "a red ball", "size": "32x32", "seconds": "1"},
               files={"input_reference": ("big.png", b"\x89PNG" + b"0" * 5000, "image/png")})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    uploads = tmp_path / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())             # nothing of it was kept
