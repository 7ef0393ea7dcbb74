"""Every default of a render, written once. SampleConfig's fields, the CLI's options, the server, boards and the
evaluation read them from here (the lowest layer: this file imports nothing but pathlib)."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"     # the shipped model (here so that `serve` starts without torch)

SECONDS = 2.0                # the length the shipped model was trained at
FPS = 8.0                    # the shipped model's native frame rate
WIDTH, HEIGHT = 64, 64
SIZE = f"{WIDTH}x{HEIGHT}"
STEPS = 10                   # Euler steps with guidance: the fewest within 2 points of 20 on 48 seen + 48 held-out
                             # clips (MODEL_CARD.md "Few-step sampling"); `--steps 4` runs the shipped distilled adapter
TEACHER_STEPS = 20           # the guided many-step sampler that fewer steps are measured against and distilled from
SOLVER = "euler"
# the solver names, here so that `cinegen --help` needs no torch; diffusion.samplers.SAMPLERS holds one solver for
# each (tests/test_flow.py checks that the two agree)
SOLVERS = ("euler", "heun", "dpmpp_2m")
GUIDANCE = 4.0               # classifier-free guidance scale; 1 = off
SEED = 0
CACHE = 0.0                  # step-cache threshold; 0 never skips
STRENGTH = 0.6               # edit (SDEdit): 0 keeps the source, 1 ignores it
LOOP_SECONDS = 1.0           # loop: the bridge from the clip's end back to its start
CONNECT_PROMPT = "a video"   # connect / loop when no prompt is given
WINDOW_SECONDS = 2.0         # long videos: one window, then windowed extension
CONTEXT_LATENTS = 2          # latent frames of an existing clip that extension conditions on

# serving: a worker renders up to BATCH compatible queued jobs (same model, size, duration, steps; text-to-video)
# in one batched call, waiting at most BATCH_WAIT seconds for more to arrive once it holds one (1: one at a time)
BATCH = 4
BATCH_WAIT = 0.25
# queue start estimates price a batch of k jobs at 1 + BATCH_EXTRA * (k - 1) jobs' time: an approximation, linear in
# k, fitted to the one measurement there is (BENCHMARKS.md (j): batch 4 served 1.71x the jobs an hour of batch 1 on
# this 2-core CPU, so 4 jobs took 4 / 1.71 = 2.34 jobs' time = 1 + 3 x 0.45); a GPU's batches are likely cheaper
BATCH_EXTRA = 0.45

PARALLEL_STRATEGIES = ("ddp", "fsdp")     # data parallelism under torchrun: replicated, or FSDP2 fully_shard

MAX_PROMPT_CHARS = 32000      # OpenAI's Sora limit; the text encoder reads the first max_tokens of it
MAX_SECONDS = 600.0
MAX_STEPS = 1000
