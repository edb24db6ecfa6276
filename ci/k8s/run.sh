#!/usr/bin/env bash
# Distributed load on Kubernetes: the scenario goes into a ConfigMap, an Indexed Job runs one
# `relaykit load --shard I/N` pod per shard (all starting at one instant), then a Job runs
# `relaykit merge` over their bundles. Exits with the merge's exit code: 0 pass, 1 SLO breached,
# 2 invalid run or error. See ci/k8s/README.md.
#
#   IMAGE=registry.example.com/relaykit:0.1.0 TARGET=http://relay.default.svc:8787 SHARDS=4 \
#       ci/k8s/run.sh scenarios/conference-remote-control.toml
#
# Environment: IMAGE, TARGET (required); SHARDS (2); LEAD_S, seconds between now and the common
# start, enough to schedule the pods, pull the image, register and connect every device (120);
# RUN_ID (UTC date-time; names the Jobs, the ConfigMap and the results folder); TIMEOUT_S, per
# Job (3600); KUBECTL (kubectl; e.g. "kubectl -n load").
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
scenario=${1:?usage: IMAGE=... TARGET=http://host:port [SHARDS=N] $0 SCENARIO.toml}
: "${IMAGE:?set IMAGE to a relaykit image (built from ci/k8s/Dockerfile)}"
: "${TARGET:?set TARGET to the relay base URL as the pods reach it, e.g. http://relay.default.svc:8787}"
SHARDS=${SHARDS:-2}
LEAD_S=${LEAD_S:-120}
TIMEOUT_S=${TIMEOUT_S:-3600}
RUN_ID=${RUN_ID:-$(date -u +%Y%m%d-%H%M%S)}
KUBECTL=${KUBECTL:-kubectl}

[[ $SHARDS =~ ^[1-9][0-9]*$ ]] || { echo "SHARDS must be a positive integer" >&2; exit 2; }
[[ $RUN_ID =~ ^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$ ]] || {
    echo "RUN_ID must be lowercase letters, digits and '-' (at most 32)" >&2
    exit 2
}
[[ -f $scenario ]] || { echo "no scenario file $scenario" >&2; exit 2; }

# Fills in the ${...} placeholders; $(JOB_COMPLETION_INDEX) is for Kubernetes to expand.
render() {
    sed -e "s|\${SHARDS}|$SHARDS|g" -e "s|\${START_AT_MS}|${START_AT_MS:-0}|g" \
        -e "s|\${TARGET}|$TARGET|g" -e "s|\${IMAGE}|$IMAGE|g" -e "s|\${RUN_ID}|$RUN_ID|g" "$here/$1"
}

# Waits for a Job to finish; prints Complete, Failed or Timeout.
wait_job() {
    local deadline=$((SECONDS + TIMEOUT_S)) state
    while ((SECONDS < deadline)); do
        state=$($KUBECTL get job "$1" -o 'jsonpath={.status.conditions[?(@.status=="True")].type}')
        case " $state " in
            *" Failed "*) echo Failed; return ;;
            *" Complete "*) echo Complete; return ;;
        esac
        sleep 5
    done
    echo Timeout
}

$KUBECTL apply -f "$here/results-pvc.yaml"
$KUBECTL create configmap "relaykit-scenario-$RUN_ID" --from-file="scenario.toml=$scenario"
$KUBECTL label configmap "relaykit-scenario-$RUN_ID" app.kubernetes.io/name=relaykit "relaykit.dev/run=$RUN_ID"

# The common start: now (this machine's clock; the nodes' clocks must agree, e.g. NTP) + LEAD_S.
# A pod that starts its schedule later than this starts late and the shards no longer overlap.
START_AT_MS=$((($(date +%s) + LEAD_S) * 1000))
echo "run $RUN_ID: $SHARDS shards against $TARGET, schedule starts at $START_AT_MS (in ${LEAD_S} s)"
render load-job.yaml | $KUBECTL apply -f -
load=$(wait_job "relaykit-load-$RUN_ID")
if [[ $load != Complete ]]; then
    echo "load Job $load: $($KUBECTL get pods -l "relaykit.dev/run=$RUN_ID" --no-headers 2>&1)" >&2
    exit 2
fi

render merge-job.yaml | $KUBECTL apply -f -
merge=$(wait_job "relaykit-merge-$RUN_ID")
$KUBECTL logs "job/relaykit-merge-$RUN_ID" || true
code=$($KUBECTL get pods -l "job-name=relaykit-merge-$RUN_ID" \
    -o 'jsonpath={.items[0].status.containerStatuses[0].state.terminated.exitCode}' || true)
echo "merge Job $merge, exit code ${code:-unknown}; reports: report.json and report.html in folder $RUN_ID of the relaykit-results volume"
[[ $code =~ ^[0-9]+$ ]] || exit 2
exit "$code"
