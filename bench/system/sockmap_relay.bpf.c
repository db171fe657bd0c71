// The kernel relay of bench/system/sockmap_relay.cpp (a prototype, issue 8/8 of wave 2): every
// byte a relayed socket receives is redirected by the kernel to the egress of its peer, the
// other socket of the same connection, without waking user space (BPF sockmap, sk_skb stream
// verdict, as Cilium accelerates local sockets).
//
// `socks` holds both sockets of each relayed connection at slots 2i and 2i+1; `peer_of` maps a
// socket's cookie to its peer's slot. A socket not in `peer_of` keeps its bytes (SK_PASS).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_SOCKMAP);
  __uint(max_entries, 65536);
  __type(key, __u32);
  __type(value, __u64);
} socks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, __u64);
  __type(value, __u32);
} peer_of SEC(".maps");

SEC("sk_skb/stream_verdict")
int relay(struct __sk_buff *skb) {
  __u64 cookie = bpf_get_socket_cookie(skb);
  __u32 *peer = bpf_map_lookup_elem(&peer_of, &cookie);
  if (!peer) return SK_PASS;
  return bpf_sk_redirect_map(skb, &socks, *peer, 0);
}

char LICENSE[] SEC("license") = "GPL";
