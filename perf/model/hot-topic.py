#!/usr/bin/env python3
"""A model of one hot topic fanned out by a spread tenant on N cores.

Inputs are costs measured on the 2-core VM (perf/DECISIONS.md, sections
"Where a delivery's CPU goes", "One tenant on every shard" and
"Cross-shard hop"); they are parameters, so the model can be re-run with
figures from the dense box. Run: `python3 perf/model/hot-topic.py [--send-us
X] ...`; it prints a Markdown table.

What a broadcast costs, by where it happens:

- The publisher's shard decodes and encodes it once, queues the frame to
  its own subscribers (a refcount and a queue push each: `push_us`), and
  puts one `Arc` on the queue of each other shard with subscribers
  (`hop_send_us` each).
- Every shard's flusher then writes its own subscribers, one `send()` each
  (`send_us`: on loopback most of it is the receiver's half of TCP).
- A receiving shard pays `hop_recv_us` per message. If it was asleep, the
  publisher's shard also writes its eventfd (`wake_send_us`, an estimate:
  one syscall, not measured on its own) and the far shard starts `wake_us`
  later.

With S subscribers spread evenly, the last subscriber of a message is
written at

    T(N) = (S/N) * push + (N-1) * hop_send + hop + (S/N) * send   (N > 1)
    T(1) = S * push + S * send

for the last far shard (the publisher queues to them one after another),
where `hop` is the time from the forward to the far shard starting its
fan-out: `wake_us` when it slept (an idle topic; the publisher then also
pays `wake_send_us` per far shard), about `hop_recv_us` when it was busy
(a hot one). The goal of issue 14 is T(N) <= T(1)/N + one hop. Within a
message the subscribers of a shard are written one after another, so the
p99 of one message's deliveries is about the time to write 99 % of them:
hop + 0.99 * (S/N) * send, unsaturated.

Throughput: a core spends S/N * (push + send) per message on its own
subscribers, the publisher's core also (N-1) * hop_send, every other core
hop_recv. Messages per second for the topic is bounded by the busiest core:

    R(N) = 1e6 / (S/N * (push + send) + (N-1) * hop_send)   [messages/s]

(a hot topic keeps the far shards awake, so no wake-ups are paid)

and deliveries/s = R(N) * S. A saturated shard batches several frames per
`send()`, which this model does not credit (it is the unsaturated case).
"""
import argparse


def model(n, s, a):
    per_core = s / n
    push = per_core * a.push_us
    write = per_core * a.send_us
    far = n - 1
    idle_hop = a.wake_us if far else 0.0
    busy_hop = a.hop_recv_us if far else 0.0
    last_idle = push + far * (a.hop_send_us + a.wake_send_us) + idle_hop + write
    last_busy = push + far * a.hop_send_us + busy_hop + write
    publisher = push + write + far * a.hop_send_us
    rate = 1e6 / publisher
    return {
        "last_idle_ms": last_idle / 1000,
        "p99_idle_ms": (push + far * (a.hop_send_us + a.wake_send_us) + idle_hop
                        + 0.99 * write) / 1000,
        "last_busy_ms": last_busy / 1000,
        "goal_ms": (s * (a.push_us + a.send_us) / n + idle_hop) / 1000,
        "msgs_per_s": rate,
        "deliveries_per_s": rate * s,
        "hop_share": (n - 1) * a.hop_send_us / publisher,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subscribers", type=int, default=10_000)
    p.add_argument("--send-us", type=float, nargs="+", default=[3.0, 5.0, 7.0],
                   help="server CPU per delivery, one send() (measured 3-7)")
    p.add_argument("--push-us", type=float, default=0.2,
                   help="queueing one frame to a local subscriber")
    p.add_argument("--hop-send-us", type=float, default=0.32,
                   help="sender's CPU per forwarded message (measured 0.29-0.32)")
    p.add_argument("--hop-recv-us", type=float, default=0.32,
                   help="receiver's CPU per forwarded message (measured 0.29-0.32)")
    p.add_argument("--wake-send-us", type=float, default=2.0,
                   help="publisher's cost to wake one idle shard (estimate)")
    p.add_argument("--wake-us", type=float, default=200.0,
                   help="waking an idle shard, p99 on uncontended cores (median 45-75)")
    p.add_argument("--cores", type=int, nargs="+", default=[1, 2, 8, 32, 64])
    a = p.parse_args()
    s = a.subscribers
    print(f"One topic, {s:,} subscribers spread evenly, one message at a time.\n")
    print("| cores | send() µs | last subscriber written, idle shards (ms) | "
          "p99 of its deliveries, idle (ms) | last written, busy shards (ms) | "
          "goal T(1)/N + hop (ms) | messages/s, saturated | deliveries/s | "
          "hops' share of the publisher's core |")
    print("|---|---|---|---|---|---|---|---|---|")
    for send in a.send_us:
        a.send_us = send
        for n in a.cores:
            m = model(n, s, a)
            print(f"| {n} | {send:g} | {m['last_idle_ms']:.2f} | {m['p99_idle_ms']:.2f} | "
                  f"{m['last_busy_ms']:.2f} | "
                  f"{m['goal_ms']:.2f} | {m['msgs_per_s']:,.0f} | "
                  f"{m['deliveries_per_s'] / 1e6:.2f} M | {m['hop_share'] * 100:.1f} % |")


if __name__ == "__main__":
    main()
