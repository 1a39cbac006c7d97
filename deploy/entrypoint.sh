#!/bin/sh
# The image's two roles (deploy/Containerfile):
#   torchserve  TorchServe in the foreground, loopback ports as in config.properties, serving the image's
#               model (model_store/mnist-$MODEL_VERSION.mar); working directory $TS_RUN_DIR.
#   web         the aiohttp app on $WEB_HOST:$WEB_PORT, reading TorchServe's key file from $TS_RUN_DIR.
# Anything else is run as given (e.g. `bash` to look around).
set -eu
case "${1:-web}" in
torchserve)
    mkdir -p "$TS_RUN_DIR/tmp" "$TS_RUN_DIR/logs"
    cd "$TS_RUN_DIR"
    # A restarted container finds the run directory (an emptyDir outlives container restarts) as the
    # killed one left it: a stale pid file would stop TorchServe from starting, a stale key file would
    # hand the web app keys that no longer work.
    rm -f key_file.json "$TS_RUN_DIR/tmp/.model_server.pid"
    # number_of_gpu: 0 (CPU) unless the pod says otherwise (the GPU variant sets TS_NUMBER_OF_GPU=1).
    # TS_LISTEN_ADDRESS: where the inference and management APIs listen instead of config.properties'
    # 127.0.0.1. Unset in a pod, whose containers share one loopback; compose.yaml sets 0.0.0.0, as
    # TorchServe has a container of its own there, on a network it shares with the web app alone. The
    # metrics API stays on loopback. (Java properties: the last of two equal keys wins.)
    {
        cat /app/config.properties
        echo "number_of_gpu=${TS_NUMBER_OF_GPU:-0}"
        if [ -n "${TS_LISTEN_ADDRESS:-}" ]; then
            echo "inference_address=http://$TS_LISTEN_ADDRESS:8080"
            echo "management_address=http://$TS_LISTEN_ADDRESS:8081"
        fi
    } > config.properties
    export TMPDIR="$TS_RUN_DIR/tmp" TEMP="$TS_RUN_DIR/tmp" LOG_LOCATION="$TS_RUN_DIR/logs" \
        METRICS_LOCATION="$TS_RUN_DIR/logs"
    # --foreground: the launcher waits on the Java frontend, so the container lives and dies with it.
    exec torchserve --foreground --ts-config config.properties --model-store /app/model_store \
        --log-config /app/log4j2.xml --models "mnist=mnist-$MODEL_VERSION.mar"
    ;;
web)
    exec python -m web.app
    ;;
*)
    exec "$@"
    ;;
esac
