"""Provenance: what every output says about where it came from, and an optional invisible watermark.

Metadata: each MP4 carries `generator`, `model`, `prompt_sha256` and `seed` tags (see `provenance_tags`),
readable by any MP4 tool (`ffprobe`, PyAV). The prompt itself is hashed, not stored, so a shared clip does not
leak a studio's prompt, yet a studio holding the prompt can prove the match.

Watermark: invisible-watermark's DWT-DCT-SVD method (the one Stable Diffusion ships: the largest singular value
of each 4x4 block of the U channel's haar LL band is quantised to carry a bit) embeds a fixed 64-bit cinegen
signature in every frame. The library walks the blocks row by row; we hand it a sequence that makes the bits a
tile of 8x8 blocks (64x64 pixels) repeated over the frame, so every 64-pixel window holds the whole signature and
its placement in the tile is the only unknown. `detect_watermark` reads the blocks' soft bits (the library's
quantiser, vectorised) as given and, when that fails, synchronises: it ranks the four flips x rescales from 2x
to 1/2 x sub-block offsets on the middle frame's centre, and reads every frame under the best three. A per-bit
vote over frames then decides. Measured by tools/watermark_robustness.py (table in the README): shifts, crops,
crop-and-rescale, up- and downscales, flips and CRF 35 are found again; rotation and CRF 40 are not. A chance
match (58 of 64 bits) over every alignment and placement tried has a union bound of about 5e-6.
The library refuses frames smaller than 256x256, so marking a smaller video is an error, not a silent no-op.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cinegen.extras import require

GENERATOR = "cinegen 0.1.0"
METHOD = "dwtDctSvd-tiled"      # the `watermark` tag of marked clips
MIN_SIDE = 256
TILE = 8                        # the signature is a TILE x TILE pattern of blocks (64x64 px), repeated over the frame
# 64 bits drawn once from a fixed seed: the cinegen signature, row by row of the tile
SIGNATURE = [int(b) for b in np.random.default_rng(0xC1E6E4).integers(0, 2, TILE * TILE)]
DETECT_THRESHOLD = 0.9          # share of signature bits that must match; unmarked clips score about 0.5
# 4x4 blocks of the LL band (imwatermark's default); U quantised in steps of 48 (the library's 36 lost CRF 35 once
# each bit had 16 blocks a 256x256 frame instead of 32; 48 costs 1.7 dB of PSNR, still above 35 dB)
BLOCK, STEP = 4, 48
WATERMARK = "the invisible watermark"
C2PA = "C2PA (content credentials)"


def _imwatermark():
    return require("imwatermark", "provenance", WATERMARK)


def _c2pa():
    return require("c2pa", "provenance", C2PA)


def provenance_tags(model: str, prompt: str, seed: int, **extra) -> dict[str, str]:
    tags = {"generator": GENERATOR, "model": model, "seed": str(seed),
            "prompt_sha256": hashlib.sha256(prompt.encode("utf-8")).hexdigest()}
    tags.update({k: str(v) for k, v in extra.items()})
    return tags


def read_tags(path: str | Path) -> dict[str, str]:
    import av
    with av.open(str(path)) as container:
        return dict(container.metadata)


def check_watermark_size(width: int, height: int) -> None:
    """The one size rule for the watermark: callers check a request with it before rendering, so no work is lost
    (a missing provenance extra too)."""
    _imwatermark()
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"the invisible watermark needs frames of at least {MIN_SIDE}x{MIN_SIDE} "
                         f"(invisible-watermark's limit); this video is {width}x{height}")


def _check_size(video: np.ndarray) -> None:
    h, w = video.shape[1:3]
    check_watermark_size(w, h)


def _layout(width: int) -> list[int]:
    """The bit sequence that imwatermark's row-major walk over the blocks (bit = sequence[block number % length])
    turns into the tiled signature: with length TILE * blocks-per-row, block (i, j) gets pattern[i % TILE, j % TILE]."""
    cols = (width // 4 * 4) // 2 // BLOCK
    return np.array(SIGNATURE).reshape(TILE, TILE)[:, np.arange(cols) % TILE].ravel().tolist()


def embed_watermark(video: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> the same frames carrying the cinegen signature."""
    _check_size(video)
    enc = _imwatermark().WatermarkEncoder()
    enc.set_watermark("bits", _layout(video.shape[2]))
    # the library works on OpenCV's BGR order
    return np.stack([enc.encode(np.ascontiguousarray(f[:, :, ::-1]), "dwtDctSvd", scales=[0, STEP, 0])[:, :, ::-1]
                     for f in video])


@dataclass(frozen=True)
class WatermarkResult:
    detected: bool
    bit_accuracy: float          # share of signature bits matched after a per-bit vote over frames
    frames: int                  # frames read (at most READ_FRAMES, spread over the clip)
    alignment: str = "as given"  # the flip, scale and offset under which it was read


def _ll(frame: np.ndarray) -> np.ndarray:
    """The haar LL band (pywt's scaling) of an RGB frame's U channel (what the library marks), whole 2x2 cells."""
    import cv2
    u = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV)[..., 1].astype(np.float32)
    h, w = u.shape[0] // 2 * 2, u.shape[1] // 2 * 2
    return u[:h, :w].reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3)) / 2


def _soft_bits(ll: np.ndarray) -> np.ndarray:
    """(h, w) LL band -> (h // BLOCK, w // BLOCK) soft bits in [-1, 1]. The library's decoder says 1 when the largest
    singular value of a block's DCT lies in the upper half of its STEP; the DCT is orthonormal, so that is the
    block's own largest singular value, found here by power iteration on B^T B (the U channel's offset of 128 makes
    it dominate: 6 steps agree with the SVD). -sin(2 pi phase): +1 at the embedded 1 (phase 3/4), -1 at the 0."""
    from einops import rearrange
    i, j = ll.shape[-2] // BLOCK, ll.shape[-1] // BLOCK                   # (..., h, w): leading dims are a batch
    blocks = rearrange(ll[..., :i * BLOCK, :j * BLOCK], "... (i a) (j b) -> ... i j a b", a=BLOCK, b=BLOCK)
    gram = np.einsum("...ai,...aj->...ij", blocks, blocks)                 # (..., i, j, 4, 4) B^T B
    v = np.ones(gram.shape[:-1], np.float32)
    for _ in range(6):
        v = np.einsum("...ij,...j->...i", gram, v)
        v /= np.linalg.norm(v, axis=-1, keepdims=True) + 1e-12
    s0 = np.sqrt(np.einsum("...i,...ij,...j->...", v, gram, v))
    return -np.sin(2 * np.pi * (s0 % STEP) / STEP)


def _fold(soft: np.ndarray) -> np.ndarray:
    """Soft bits of every block (..., i, j) summed by their place in the tile: (..., TILE * TILE), row by row."""
    h, w = -(-soft.shape[-2] // TILE) * TILE, -(-soft.shape[-1] // TILE) * TILE
    padded = np.zeros((*soft.shape[:-2], h, w))
    padded[..., :soft.shape[-2], :soft.shape[-1]] = soft
    return padded.reshape(*soft.shape[:-2], h // TILE, TILE, w // TILE, TILE).sum(axis=(-4, -2)).reshape(*soft.shape[:-2], -1)


# every cyclic placement of the signature in the tile, as +-1 rows: (TILE * TILE placements, TILE * TILE bits)
_PLACEMENTS = np.stack([np.roll(2.0 * np.array(SIGNATURE).reshape(TILE, TILE) - 1, (-a, -b), axis=(0, 1)).ravel()
                        for a in range(TILE) for b in range(TILE)])


def _read(lls: list[np.ndarray]) -> tuple[float, float]:
    """(bit accuracy, normalised correlation) of the signature's best placement over these LL bands."""
    folded = sum(_fold(_soft_bits(ll)) for ll in lls)
    scores = _PLACEMENTS @ folded
    best = int(np.argmax(scores))
    return float(np.mean((folded > 0) == (_PLACEMENTS[best] > 0))), float(scores[best] / max(np.abs(folded).sum(), 1e-9))


# Reads vote over a window around each frame's centre (whole frames up to 256x256) and over at most READ_FRAMES
# frames spread over the clip, so detection costs the same at 1080p as at 256x256.
READ_WINDOW = 256
READ_FRAMES = 48
# The synchronisation search: the four flips; scales from 2 down to 1/2 in steps of 2^(-1/32) (2.2%: the
# SEARCH_WINDOW drifts at most 1.4 px at the nearest one); LL offsets 0-3 (0-6 px; whole blocks are placements).
SEARCH_FLIPS = ((False, False), (False, True), (True, False), (True, True))
SEARCH_SCALES = tuple(2 ** (k / 32) for k in range(32, -33, -1))
SEARCH_WINDOW = 128              # pixels (the top-left of the read window) of the middle frame the search reads
SEARCH_KEEP = 3                  # best alignments then read on every frame


def _window(frame: np.ndarray, flip: tuple[bool, bool], scale: float, size: int = READ_WINDOW) -> np.ndarray:
    """The LL band of a frame flipped back (vertically, horizontally) and rescaled by `scale` (OpenCV's area
    filter), cut to a size x size window whose source corner depends only on the frame, flip and scale (a corner on
    the 8-pixel grid near the centre), so the search and the read see the same alignment."""
    import cv2
    f = frame[::-1 if flip[0] else 1, ::-1 if flip[1] else 1]
    need = int(np.ceil(READ_WINDOW / scale)) + 2                         # source pixels behind a READ_WINDOW
    y, x = max(0, (f.shape[0] - need) // 2) // 8 * 8, max(0, (f.shape[1] - need) // 2) // 8 * 8
    crop = np.ascontiguousarray(f[y:y + need, x:x + need])
    if scale != 1:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return _ll(crop[:size, :size])


def detect_watermark(video: np.ndarray) -> WatermarkResult:
    """Reads the signature as given; when that fails, synchronises: ranks every alignment (flip, scale, sub-block
    offset; ~16,600 of them) by how well the middle frame carries the signature, and reads the frames under the
    best few."""
    _imwatermark()                               # its OpenCV reads the colours; a missing extra is a clear error
    h, w = video.shape[1:3]
    if min(h, w) < TILE * 8:
        raise ValueError(f"the invisible watermark needs frames of at least {TILE * 8}x{TILE * 8} to be read; "
                         f"this video is {w}x{h}")
    frames = video[np.unique(np.linspace(0, len(video) - 1, min(len(video), READ_FRAMES)).round().astype(int))]
    as_given = (False, False)
    result = WatermarkResult(False, _read([_window(f, as_given, 1) for f in frames])[0], len(frames))
    if result.bit_accuracy >= DETECT_THRESHOLD:
        return WatermarkResult(True, result.bit_accuracy, len(frames))
    middle, ranked = video[len(video) // 2], []
    offsets = [(dy, dx) for dy in range(BLOCK) for dx in range(BLOCK)]
    for flip in SEARCH_FLIPS:
        for scale in SEARCH_SCALES:
            ll = _window(middle, flip, scale, SEARCH_WINDOW)
            n = (min(ll.shape) - BLOCK) // BLOCK * BLOCK                  # the same blocks at every offset
            if n < TILE * BLOCK:
                continue                                                  # too small at this scale to hold a tile
            folded = _fold(_soft_bits(np.stack([ll[dy:dy + n, dx:dx + n] for dy, dx in offsets])))  # (16, 64)
            scores = (folded @ _PLACEMENTS.T).max(axis=1) / np.maximum(np.abs(folded).sum(axis=1), 1e-9)
            ranked += [(score, flip, scale, dy, dx) for score, (dy, dx) in zip(scores, offsets)]
    for _, flip, scale, dy, dx in sorted(ranked, reverse=True)[:SEARCH_KEEP]:
        accuracy = _read([_window(f, flip, scale)[dy:, dx:] for f in frames])[0]
        if accuracy > result.bit_accuracy:
            turned = " and ".join(n for n, f in zip(("flipped vertically", "flipped horizontally"), flip) if f)
            name = f"{turned + ', ' if turned else ''}scaled by {scale:.3f}, offset ({2 * dx}, {2 * dy}) px"
            result = WatermarkResult(accuracy >= DETECT_THRESHOLD, accuracy, len(frames), name)
    return result


# --- C2PA (Content Credentials) ---

def check_c2pa_credentials(cert_chain: str | Path, private_key: str | Path) -> None:
    """Raises ValueError naming the first credential file that does not exist (or the missing provenance extra)."""
    _c2pa()
    for f in (cert_chain, private_key):
        if not Path(f).is_file():
            raise ValueError(f"C2PA credential file not found: {f}")


def sign_c2pa(path: str | Path, cert_chain: str | Path, private_key: str | Path, tags: dict[str, str] | None = None) -> Path:
    """Embeds a signed C2PA manifest in an MP4 in place (signed into a temp file, then renamed).

    The manifest says the clip was created by a trained algorithm (IPTC trainedAlgorithmicMedia, as C2PA asks of
    generative output) and carries cinegen's provenance tags as an `org.cinegen.generation` assertion.
    cert_chain: PEM, signing certificate first (ES256 / P-256 key), then its issuers.
    """
    import json

    from cinegen.io.files import atomic_write
    c2pa = _c2pa()
    path = Path(path)
    check_c2pa_credentials(cert_chain, private_key)
    manifest = {"claim_generator_info": [{"name": "cinegen", "version": GENERATOR.split()[-1]}], "title": path.name,
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [{
                    "action": "c2pa.created",
                    "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"}]}},
                    {"label": "org.cinegen.generation", "data": dict(tags or read_tags(path))}]}
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg=b"es256", sign_cert=Path(cert_chain).read_bytes(),
                                                           private_key=Path(private_key).read_bytes(), ta_url=None))
        builder = c2pa.Builder(json.dumps(manifest))

        def write(tmp: str) -> None:
            with open(path, "rb") as src, open(tmp, "w+b") as dst:
                builder.sign(signer, "video/mp4", src, dst)
        atomic_write(path, write)
    except c2pa.C2paError as e:
        raise ValueError(f"C2PA signing failed: {e}") from None
    return path


def read_c2pa(path: str | Path) -> dict | None:
    """The active C2PA manifest with its validation state, or None when the file carries none."""
    import json
    c2pa = _c2pa()
    try:
        report = json.loads(c2pa.Reader(str(path)).json())
    except c2pa.C2paError:
        return None
    manifest = report["manifests"][report["active_manifest"]]
    assertions = {a["label"]: a.get("data") for a in manifest.get("assertions", [])}
    return {"state": report.get("validation_state"), "status": [s["code"] for s in report.get("validation_status", [])],
            "generator": manifest.get("claim_generator_info", [{}])[0].get("name"),
            "generation": assertions.get("org.cinegen.generation"),
            # the SDK may upgrade the label (c2pa.actions.v2)
            "actions": next((v for k, v in assertions.items() if k.startswith("c2pa.actions")), None)}


def make_credentials(folder: str | Path, name: str = "cinegen studio") -> tuple[Path, Path]:
    """A private CA and an ES256 signing certificate for it (chain.pem, key.pem). Validators report such
    manifests as signed but `signingCredential.untrusted` until the CA is added to their trust list: use a
    certificate from a C2PA-trusted CA for public distribution."""
    import datetime
    require("cryptography", "provenance", "cinegen c2pa-credentials")

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, issuer, public_key, signing_key, ca: bool):
        # the C2PA certificate profile: a CA with keyCertSign; an end-entity with digitalSignature, an allowed EKU,
        # an organisation in its name and an authority key identifier

        usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                     encipher_only=False, decipher_only=False)
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=365))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
        if not ca:
            b = (b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                 .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False))
        return b.sign(signing_key, hashes.SHA256())
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, name)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA"), org])
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name), org])
    ca = cert(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    leaf = cert(leaf_name, ca_name, key.public_key(), ca_key, False)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (folder / "chain.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (folder / "key.pem").chmod(0o600)
    return folder / "chain.pem", folder / "key.pem"


# --- verification ---

def verify(path: str | Path, prompt: str | None = None, require_watermark: bool = False,
           require_c2pa: bool = False) -> dict:
    """Every provenance check of a clip, for people and scripts. A check is required when asked for, or when the
    file itself calls for it: a present C2PA manifest must validate, a clip whose tags say it was watermarked (or
    that has no cinegen tags at all, so the watermark is the only evidence) must carry the watermark, and a given
    prompt must match. report["ok"] is True only when every required check holds. ValueError: not a video."""
    import hashlib

    from cinegen.io.video import read_video
    video = read_video(path)[0]                  # fails cleanly on a missing or undecodable file
    tags = read_tags(path)
    checks = {}
    if prompt is not None:
        ok = tags.get("prompt_sha256") == hashlib.sha256(prompt.encode("utf-8")).hexdigest()
        checks["prompt"] = {"required": True, "ok": ok, "detail": "matches" if ok else "does not match prompt_sha256"}
    manifest = read_c2pa(path)
    if manifest is None:
        checks["c2pa"] = {"required": require_c2pa, "ok": False, "detail": "no manifest"}
    else:
        ok = manifest["state"] in ("Valid", "Trusted")
        checks["c2pa"] = {"required": True, "ok": ok, "state": manifest["state"], "status": manifest["status"],
                          "detail": f"{manifest['state']} manifest by {manifest['generator']}"
                                    + (f" ({', '.join(manifest['status'])})" if manifest["status"] else "")}
    claims = tags.get("watermark", "none") not in ("none", "") or not tags.get("generator", "").startswith("cinegen")
    try:
        result = detect_watermark(video)
        checks["watermark"] = {"required": require_watermark or claims, "ok": result.detected,
                               "bit_accuracy": result.bit_accuracy, "frames": result.frames, "alignment": result.alignment,
                               "detail": f"{'DETECTED' if result.detected else 'not found'} ({result.bit_accuracy:.0%} "
                                         f"of signature bits over {result.frames} frames, {result.alignment})"}
    except ValueError as e:
        checks["watermark"] = {"required": require_watermark or claims, "ok": False, "detail": f"not checked ({e})"}
    return {"file": str(path), "tags": tags, "checks": checks,
            "ok": all(c["ok"] for c in checks.values() if c["required"])}
