# Sourced by the GPU scripts (gpu-e2e.sh, gpu-tp.sh), ON THE GPU MACHINE, from the repository root.
#
# build_gpu_addons LOGDIR: builds both addons at once (@flashserve/cuda with cuBLAS, sm_90a only;
# @flashserve/mla-backend) against the Node-API headers carried in .device/napi, logs in LOGDIR, and
# exports FLASHSERVE_CUDA_ADDON and FLASHSERVE_MLA_ADDON. On failure prints the first errors and
# returns 1. CUDA_BUILD / MLA_BUILD (set before sourcing) pick other build trees, and GPU_ADDON_CMAKE_ARGS
# adds CMake options to both (packages/cuda/scripts/gpu-timeline.sh: the timeline's measurement build).
CUDA_BUILD=${CUDA_BUILD:-/tmp/flashserve-cuda-build}
MLA_BUILD=${MLA_BUILD:-/tmp/flashserve-mla-build}

build_gpu_addons() {
  local logs=$1 napi="$PWD/.device/napi/node-api-headers;$PWD/.device/napi/node-addon-api"
  local extra=(${GPU_ADDON_CMAKE_ARGS:-})
  (cmake -S packages/cuda -B "$CUDA_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHSERVE_WITH_CUBLAS=ON \
    -DFLASHSERVE_SM90_ONLY=ON "-DNODE_API_INCLUDE_DIRS=$napi" "${extra[@]}" && cmake --build "$CUDA_BUILD" -j "$(nproc)") \
    > "$logs/cuda-build.log" 2>&1 &
  local cuda_pid=$!
  (cmake -S packages/mla-backend -B "$MLA_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "-DNODE_API_INCLUDE_DIRS=$napi" "${extra[@]}" \
    && cmake --build "$MLA_BUILD" -j "$(nproc)") > "$logs/mla-build.log" 2>&1 &
  local mla_pid=$! cuda_rc mla_rc
  wait $cuda_pid; cuda_rc=$?
  wait $mla_pid; mla_rc=$?
  if [ $cuda_rc -ne 0 ] || [ $mla_rc -ne 0 ]; then
    grep -hE "error|Error" "$logs/cuda-build.log" "$logs/mla-build.log" | head -40
    echo "build FAILED (cuda rc=$cuda_rc, mla rc=$mla_rc)"
    return 1
  fi
  export FLASHSERVE_CUDA_ADDON=$CUDA_BUILD/Release/flashserve_cuda.node
  export FLASHSERVE_MLA_ADDON=$MLA_BUILD/Release/flashserve_mla.node
}

# stop_server: SIGTERM to the server whose pid is in $srv, up to 15 s to drain and exit, then SIGKILL.
stop_server() {
  kill -TERM "$srv" 2>/dev/null
  for _ in $(seq 1 60); do kill -0 "$srv" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$srv" 2>/dev/null
  wait "$srv" 2>/dev/null
}
