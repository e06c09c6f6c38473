#!/usr/bin/env bash
# perf/gpu_check.sh: the checks that need a GPU, in one command, with PASS/FAIL/SKIP per check.
#
#   bash perf/gpu_check.sh [--install] [--only NAME[,NAME...]] [--list]
#
# Checks (each with its own time limit, `timeout`; all together within BUDGET_S, 480 s):
#   vllm_sampler     the vllm sampler on a real engine on CUDA matches the hf sampler, and follows
#                    update_weights (tests/samplers/test_vllm.py, needs vllm)
#   vllm_train       limr train with sampler.name=vllm, 3 steps (tests/test_gpu_paths.py, vllm)
#   deepspeed_zero2  3 bf16-mixed steps under ZeRO-2 (tests/test_gpu_paths.py, needs deepspeed)
#   deepspeed_zero3  3 bf16-mixed steps under ZeRO-3 (tests/test_gpu_paths.py, needs deepspeed)
#   bf16_true        3 steps with trainer.precision=bf16-true on the GPU (tests/test_gpu_paths.py)
#   chunked_logprobs the chunked log-probs' CUDA peak memory far below the unchunked one, same
#                    values and gradients (tests/test_gpu_paths.py)
#   cli_train        `python -m limr train` on the GPU, builtin:tiny, bf16-true, 2 steps
#
# Needs: one CUDA GPU (any with a few GB free), this checkout's venv (.venv/bin/python, or set
# PYTHON=...) with a CUDA build of torch and the gpu extra (deepspeed, vllm): install it with
# `pip install -e '.[gpu]'`, or pass --install to have this script run exactly that first (it
# installs nothing otherwise). A check whose package is missing is a SKIP with the reason.
# Expected time: about 4-6 minutes on one recent GPU (the two vLLM engine starts dominate);
# the budget caps it at 8 minutes, and a check that finds the budget spent is a FAIL.
#
# Without CUDA (e.g. a CPU-only machine) it ends within seconds: every check SKIP, reason given.
# Exit status: 0 every check that ran passed (and at least one ran); 1 some check failed (or
#   timed out, or was left without time); 2 bad arguments; 3 no check could run (no CUDA, or all
#   skipped): nothing was verified, but nothing failed.
# GPU_CHECK_ASSUME_CUDA=1 runs the checks even where the probe finds no CUDA (to test this script
#   itself on a CPU: the pytest checks then SKIP through the suite's own gpu marker, cli_train FAILs).
set -u

cd "$(dirname "$0")/.." || exit 2
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
BUDGET_S="${BUDGET_S:-480}"
ALL="vllm_sampler vllm_train deepspeed_zero2 deepspeed_zero3 bf16_true chunked_logprobs cli_train"
INSTALL=0
ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --install) INSTALL=1 ;;
        --only) shift; ONLY="${1:-}" ;;
        --only=*) ONLY="${1#--only=}" ;;
        --list) for c in $ALL; do echo "$c"; done; exit 0 ;;
        -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
CHECKS="$ALL"
if [ -n "$ONLY" ]; then
    CHECKS=""
    for c in ${ONLY//,/ }; do
        case " $ALL " in
            *" $c "*) CHECKS="$CHECKS $c" ;;
            *) echo "gpu_check.sh: unknown check $c; valid: $ALL" >&2; exit 2 ;;
        esac
    done
fi

if [ "$INSTALL" = 1 ]; then
    echo "== $PYTHON -m pip install -e '.[gpu]'"
    "$PYTHON" -m pip install -e '.[gpu]' || { echo "gpu_check.sh: the install failed" >&2; exit 1; }
fi

LOGS="$(mktemp -d "${TMPDIR:-/tmp}/limr-gpu-check.XXXXXX")"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
START=$(date +%s)
SUMMARY=()
FAILED=0
PASSED=0

record() {  # record STATUS CHECK SECONDS [REASON]
    SUMMARY+=("$(printf '%-5s %-17s %5ss  %s' "$1" "$2" "$3" "${4:-}")")
    echo "-- $1 $2 (${3}s)${4:+: $4}"
    case "$1" in FAIL) FAILED=$((FAILED + 1)) ;; PASS) PASSED=$((PASSED + 1)) ;; esac
}

# What the machine has: CUDA (and its device), deepspeed, vllm.
PROBE="$("$PYTHON" - <<'EOF' 2>/dev/null
import importlib.util
try:
    import torch
    cuda = torch.cuda.is_available()
    print("torch", torch.__version__, "cuda" if cuda else "nocuda",
          torch.cuda.get_device_name(0).replace(" ", "_") if cuda else "-")
except Exception as e:  # noqa: BLE001
    print("torch missing", type(e).__name__, "-")
for name in ("deepspeed", "vllm"):
    print(name, "yes" if importlib.util.find_spec(name) else "no")
EOF
)"
echo "== python: $PYTHON"
echo "$PROBE" | sed 's/^/== /'
CUDA=$(echo "$PROBE" | awk '$1 == "torch" {print $3}')
HAS_DEEPSPEED=$(echo "$PROBE" | awk '$1 == "deepspeed" {print $2}')
HAS_VLLM=$(echo "$PROBE" | awk '$1 == "vllm" {print $2}')

needs() {  # needs CHECK: the reason it cannot run here, empty when it can
    if [ "$CUDA" != "cuda" ] && [ "${GPU_CHECK_ASSUME_CUDA:-0}" != 1 ]; then
        echo "no CUDA device (torch.cuda.is_available() is False, or torch missing)"; return
    fi
    case "$1" in
        vllm_*) [ "$HAS_VLLM" = yes ] || echo "vllm not installed (pip install -e '.[gpu]', or --install)" ;;
        deepspeed_*) [ "$HAS_DEEPSPEED" = yes ] || echo "deepspeed not installed (pip install -e '.[gpu]', or --install)" ;;
    esac
}

limit_of() {  # the time limit of one check, in seconds
    case "$1" in
        vllm_sampler|vllm_train) echo 150 ;;
        deepspeed_zero2|deepspeed_zero3) echo 100 ;;
        bf16_true|cli_train) echo 75 ;;
        chunked_logprobs) echo 60 ;;
    esac
}

node_of() {  # the pytest node id of a check (none for cli_train)
    case "$1" in
        vllm_sampler) echo tests/samplers/test_vllm.py::test_real_vllm_matches_hf_and_follows_updates ;;
        vllm_train) echo tests/test_gpu_paths.py::test_vllm_sampler_trains_on_gpu ;;
        deepspeed_zero2) echo 'tests/test_gpu_paths.py::test_deepspeed_bf16_steps[2]' ;;
        deepspeed_zero3) echo 'tests/test_gpu_paths.py::test_deepspeed_bf16_steps[3]' ;;
        bf16_true) echo tests/test_gpu_paths.py::test_bf16_true_steps_on_gpu ;;
        chunked_logprobs) echo tests/test_gpu_paths.py::test_chunked_logprobs_use_less_cuda_memory ;;
    esac
}

run_check() {  # run_check CHECK LIMIT LOG: the check's command, its exit status
    local node
    node=$(node_of "$1")
    if [ -n "$node" ]; then
        timeout -k 10 "$2" "$PYTHON" -m pytest -q -rA -p no:cacheprovider "$node" >"$3" 2>&1
        return $?
    fi
    # cli_train: the command line itself, on the GPU, the tiny builtin model in bf16-true
    local run="$LOGS/cli_run"
    timeout -k 10 "$2" "$PYTHON" -m limr train model.name_or_path=builtin:tiny \
        data.train=synthetic:arith data.max_prompts=8 sampler.n_samples=2 \
        sampler.max_new_tokens=8 ppo.rollout_batch_size=2 ppo.train_batch_size=4 \
        ppo.micro_batch_size=2 ppo.warmup_steps=0 trainer.accelerator=gpu trainer.devices=1 \
        trainer.precision=bf16-true trainer.max_steps=2 trainer.progress=false \
        "run.run_dir=$run" >"$3" 2>&1 || return $?
    [ -f "$run/final/model.safetensors" ] || { echo "no $run/final/model.safetensors" >>"$3"; return 1; }
}

for check in $CHECKS; do
    reason=$(needs "$check")
    if [ -n "$reason" ]; then
        record SKIP "$check" 0 "$reason"
        continue
    fi
    left=$((BUDGET_S - ($(date +%s) - START)))
    limit=$(limit_of "$check")
    if [ "$left" -lt 20 ]; then
        record FAIL "$check" 0 "not run: the ${BUDGET_S}s budget is spent (rerun with --only $check)"
        continue
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    log="$LOGS/$check.log"
    echo "== $check (limit ${limit}s, log $log)"
    t0=$(date +%s)
    run_check "$check" "$limit" "$log"
    rc=$?
    dt=$(($(date +%s) - t0))
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        tail -n 20 "$log"
        record FAIL "$check" "$dt" "timed out after ${limit}s"
    elif [ "$rc" != 0 ]; then
        tail -n 40 "$log"
        record FAIL "$check" "$dt" "exit status $rc (log $log)"
    elif grep -qE '^SKIPPED|[0-9]+ skipped' "$log" && ! grep -qE '[0-9]+ passed' "$log"; then
        record SKIP "$check" "$dt" "$(grep -m1 '^SKIPPED' "$log" | sed 's/^SKIPPED \[[0-9]*\] [^ ]* //')"
    else
        record PASS "$check" "$dt"
    fi
done

echo
echo "== summary ($(($(date +%s) - START))s, logs in $LOGS)"
for line in "${SUMMARY[@]}"; do echo "$line"; done
if [ "$FAILED" -gt 0 ]; then exit 1; fi
if [ "$PASSED" -eq 0 ]; then exit 3; fi
exit 0
