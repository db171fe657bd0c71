// LD_PRELOAD shim for the nginx peer of bench/system: TPROXY hands connections only to sockets
// with IP_TRANSPARENT, and nginx 1.22's stream `listen` has no `transparent` parameter (only
// `proxy_bind` has one). This sets IP_TRANSPARENT / IPV6_TRANSPARENT on every socket just
// before listen(); errors (non-IP sockets) are ignored. Bench use only.
#include <dlfcn.h>
#include <netinet/in.h>
#include <sys/socket.h>

extern "C" int listen(int fd, int backlog) {
  using Listen = int (*)(int, int);
  static Listen real = reinterpret_cast<Listen>(dlsym(RTLD_NEXT, "listen"));
  int one = 1;
  setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one));
  setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one));
  return real(fd, backlog);
}
