import type { PoolMember } from "./pool-member";
import { watchDeviceHealth } from "./watch-device-health";

/**
 * Watches `member`'s telemetry every `intervalMs` until its watch stops, keeping its reported load
 * and critical conditions current for routing. Runs in the background; never rejects.
 */
export function watchMemberHealth(member: PoolMember, intervalMs: number): void {
  void watchDeviceHealth(member.driver, intervalMs, member.watch.signal, (health) => {
    member.reportedLoad = health?.reportedLoad;
    // Critical conditions stand until a snapshot (or a ready Probe) says otherwise: a device
    // whose telemetry failed after SHUTTING_DOWN is not back.
    if (health) member.critical = health.critical;
  });
}
