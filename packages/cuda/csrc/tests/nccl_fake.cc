// A fake libnccl.so.2 for test/nccl-binding.test.ts: checks, on any machine, that the entry points
// declared in csrc/binding/nccl.cc match NCCL's C ABI. Every collective "fails" with result 5 and
// reports the arguments it received through ncclGetErrorString, so the test can read them back.
#include <cstdio>
#include <cstring>
#include <cstddef>
#include <cstdlib>
extern "C" {
struct Id { char internal[128]; };
static char g_msg[512];
static int g_comm_token = 42;
int ncclGetVersion(int* v) { *v = 22807; return 0; }
int ncclGetUniqueId(Id* id) { for (int i = 0; i < 128; i++) id->internal[i] = (char)i; return 0; }
int ncclCommInitRank(void** comm, int n, Id id, int rank) {
  int ok = 1; for (int i = 0; i < 128; i++) ok &= id.internal[i] == (char)i;
  const char* nvls = getenv("NCCL_NVLS_ENABLE");
  snprintf(g_msg, sizeof g_msg, "init n=%d rank=%d id_ok=%d nvls=%s", n, rank, ok, nvls ? nvls : "unset");
  *comm = &g_comm_token; return 5; }
int ncclAllReduce(const void* s, void* r, size_t count, int dt, int op, void* comm, void* stream) {
  snprintf(g_msg, sizeof g_msg, "allreduce s=%p r=%p count=%zu dt=%d op=%d comm_ok=%d stream=%p", s, r, count, dt, op, comm == &g_comm_token, stream); return 5; }
int ncclAllGather(const void* s, void* r, size_t count, int dt, void* comm, void* stream) {
  snprintf(g_msg, sizeof g_msg, "allgather s=%p r=%p count=%zu dt=%d comm_ok=%d stream=%p", s, r, count, dt, comm == &g_comm_token, stream); return 5; }
int ncclBroadcast(const void* s, void* r, size_t count, int dt, int root, void* comm, void* stream) {
  snprintf(g_msg, sizeof g_msg, "broadcast s=%p r=%p count=%zu dt=%d root=%d comm_ok=%d stream=%p", s, r, count, dt, root, comm == &g_comm_token, stream); return 5; }
int ncclCommDestroy(void* comm) { return comm == &g_comm_token ? 0 : 4; }
int ncclCommAbort(void* comm) { return comm == &g_comm_token ? 0 : 4; }
const char* ncclGetErrorString(int r) { return r == 5 ? g_msg : "other"; }
}
