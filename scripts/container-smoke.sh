#!/usr/bin/env bash
# Container smoke test: build the three images, prove the service image has no
# torch, run the Compose stack, wait for /readyz through the proxy, forecast,
# hold 16 stalled uploads open and see a normal forecast still answered in under
# a second, run the retraining job, see the new version served without
# restarting `api`, tear everything down.
#
#   scripts/container-smoke.sh                          # Docker
#   . ../shared/tools/containers/env.sh                  # or podman, host networking only:
#   w=$(pip config get global.find-links)
#   DOCKER=podman COMPOSE=../shared/tools/containers/compose \
#     BUILD_ARGS="-v $w:$w:ro --build-arg PIP_FIND_LINKS=$w" COMPOSE_BUILD_ARGS="$BUILD_ARGS" \
#     scripts/container-smoke.sh
#
# Environment: DOCKER (build/run/inspect command, default docker), COMPOSE (default
# "docker compose"), BUILD_ARGS (extra image build flags), URL (default
# http://127.0.0.1:8000), KEEP=1 to leave the stack up.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-docker}
COMPOSE=${COMPOSE:-docker compose}
BUILD_ARGS=${BUILD_ARGS:-}
URL=${URL:-http://127.0.0.1:8000}
SERVICE_IMAGE=seqcast-service:latest
TRAINER_IMAGE=seqcast-trainer:latest
PROXY_IMAGE=seqcast-proxy:latest
times=()

step() {  # step NAME COMMAND...: run, time, and remember the duration
    local name=$1 start end
    shift
    echo "== $name"
    start=$(date +%s.%N)
    "$@"
    end=$(date +%s.%N)
    times+=("$(printf '%-34s %7.1f s' "$name" "$(echo "$end - $start" | bc)")")
}

cleanup() {
    if [ "${KEEP:-0}" != 1 ]; then
        $COMPOSE --profile retrain down -v >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

forecast_version() {  # prints the X-Model-Version of one forecast of the demo data's last 36 months
    local body
    body=$(python3 -c "
import csv, json
rows = list(csv.DictReader(open('data/airline.csv')))[-36:]
print(json.dumps({'series': [{'id': 'airline', 'values': [float(r['value']) for r in rows],
                              'timestamps': [r['timestamp'] for r in rows]}]}))")
    curl -fsS -D - -o /tmp/seqcast-smoke-forecast.json -H 'Content-Type: application/json' \
        --data "$body" "$URL/v1/models/demo/forecast" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-model-version"{print $2}'
}

wait_ready() {
    for _ in $(seq 1 120); do
        if curl -fsS "$URL/readyz" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    echo "api not ready after 120 s" >&2
    $COMPOSE logs api | tail -50 >&2 || true
    return 1
}

# shellcheck disable=SC2086  # BUILD_ARGS is a list of flags
build() { $DOCKER build $BUILD_ARGS --target "$1" -t "$2" .; }

no_torch() {
    $DOCKER run --rm --network host --entrypoint python "$SERVICE_IMAGE" -c "
import importlib.util, sys
assert importlib.util.find_spec('torch') is None, 'torch is importable in the service image'
assert importlib.util.find_spec('training') is None, 'training code is in the service image'
import service.app  # the service itself imports fine
print('service image: no torch, no training code; service imports')"
}

seed_weak() {
    # A deliberately weak first model (2 epochs), so the retraining job has something to beat.
    $COMPOSE --profile retrain run --rm retrain train --config configs/demo.toml --model-dir /models --epochs 2 -q
}

admin_key() {  # the key seed wrote: reload needs it (401 without, 200 with)
    local key code
    key=$($COMPOSE exec -T api cat /keys/admin)
    [ -n "$key" ] || { echo "no admin key in /keys/admin" >&2; return 1; }
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/v1/models/demo/reload")
    [ "$code" = 401 ] || { echo "reload without the key: $code, expected 401" >&2; return 1; }
    curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $key" "$URL/v1/models/demo/reload"
    echo "reload: 401 without the admin key, 200 with it"
}

api_container() {  # by Compose's labels, which docker compose and podman-compose both set
    $DOCKER ps -q --filter label=com.docker.compose.project=seqcast --filter label=com.docker.compose.service=api | head -1
}
started_at() { $DOCKER inspect --format '{{.State.StartedAt}}' "$(api_container)"; }

step "build service image" build service "$SERVICE_IMAGE"
step "build trainer image" build trainer "$TRAINER_IMAGE"
step "build proxy image" build proxy "$PROXY_IMAGE"
step "service image has no torch" no_torch
$COMPOSE --profile retrain down -v >/dev/null 2>&1 || true
step "seed a weak demo model" seed_weak
step "compose up" $COMPOSE up -d
step "wait for /readyz" wait_ready
first=$(forecast_version)
echo "forecast served by version $first: $(head -c 200 /tmp/seqcast-smoke-forecast.json)"
[ -n "$first" ] || { echo "no X-Model-Version header" >&2; exit 1; }
step "16 stalled clients via the proxy" python3 scripts/stalled_clients.py "$URL" --model demo --clients 16 --under 1.0
step "admin key made by seed" admin_key
api_started=$(started_at)
step "retrain job" $COMPOSE --profile retrain run --rm retrain retrain --config configs/demo.toml --model-dir /models \
    --set retrain.config_from=job
wait_new() {
    for _ in $(seq 1 60); do
        now=$(forecast_version)
        if [ -n "$now" ] && [ "$now" != "$first" ]; then echo "now served: $now"; return 0; fi
        sleep 1
    done
    echo "still serving $first 60 s after the retrain job" >&2
    return 1
}
step "new version served" wait_new
[ "$(started_at)" = "$api_started" ] || { echo "api was restarted" >&2; exit 1; }
echo "api not restarted (started $api_started)"

service_size=$($DOCKER image inspect --format '{{.Size}}' "$SERVICE_IMAGE")
trainer_size=$($DOCKER image inspect --format '{{.Size}}' "$TRAINER_IMAGE")
echo
proxy_size=$($DOCKER image inspect --format '{{.Size}}' "$PROXY_IMAGE")
echo "image sizes: service $((service_size / 1048576)) MiB, trainer $((trainer_size / 1048576)) MiB, proxy $((proxy_size / 1048576)) MiB"
printf '%s\n' "${times[@]}"
echo "container smoke: OK"
