/*
 * Advisory whole-file locks, as a Node-API addon: tryLockFile(fd: number) -> boolean.
 *
 * Why it exists: a shared-memory region in /dev/shm outlives a process killed outright, so OPAL
 * sweeps stale regions. Whether a region's owner still runs cannot be decided by its PID: a
 * process in another PID namespace sharing /dev/shm (a sidecar container) sees other PIDs, or
 * none. A lock can: the owner holds flock(LOCK_EX) on its region for as long as it lives (the
 * kernel drops it when the last descriptor of that open file closes, however the process ends),
 * and locks live on the inode, which every namespace sharing the file system sees alike.
 * Node has no flock, hence this addon. On systems without flock it exports nothing.
 */
#include <node_api.h>

#if defined(__linux__) || defined(__APPLE__)
#include <errno.h>
#include <string.h>
#include <sys/file.h>

/* flock(fd, LOCK_EX | LOCK_NB): true when taken (or already held through this open file), false
 * when another open file holds it; throws with the errno name for anything else. */
static napi_value try_lock_file(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int32_t fd = -1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_range_error(env, NULL, "tryLockFile: expected a file descriptor");
    return NULL;
  }
  int taken = 1;
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) {
      taken = 0;
      break;
    }
    napi_throw_error(env, errno == EBADF ? "EBADF" : "EIO", strerror(errno));
    return NULL;
  }
  napi_value result;
  napi_get_boolean(env, taken, &result);
  return result;
}
#endif

NAPI_MODULE_INIT() {
#if defined(__linux__) || defined(__APPLE__)
  napi_value fn;
  if (napi_create_function(env, "tryLockFile", NAPI_AUTO_LENGTH, try_lock_file, NULL, &fn) !=
      napi_ok)
    return NULL;
  napi_set_named_property(env, exports, "tryLockFile", fn);
#endif
  return exports;
}
