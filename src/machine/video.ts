import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { QemuVm } from "../vm/qemu.js";
import { errorMessage } from "../util/errors.js";
import { run } from "../util/proc.js";

/** A machine's recorded screen: the file and where its first frame sits on the test's clock. */
export interface Video {
  machine: string;
  /** the WebM file */
  file: string;
  /** ms after the test began at which the video's t = 0 */
  startMs: number;
  durationMs: number;
  /** distinct screens captured (the video repeats each until the next) */
  frames: number;
}

interface Frame {
  file: string;
  atMs: number;
}

/**
 * `vmrig run --video`: a machine's screen, captured with QMP `screendump` a few times a
 * second while its VM runs (across restarts and restores), keeping only frames that
 * differ from the one before, encoded with ffmpeg once the machine has stopped. A PNG
 * screendump of an unchanged screen is the same bytes, so a hash tells a new frame.
 */
export class ScreenRecorder {
  private readonly frames: Frame[] = [];
  private lastHash = "";
  private vm: QemuVm | undefined;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private n = 0;
  /** when recording stopped last (the last frame lasts until then) */
  private endMs = 0;
  /** what went wrong, once (a failing capture never fails the test) */
  error: string | undefined;

  constructor(
    readonly machine: string,
    /** where frames wait to be encoded (the run's state directory) */
    private readonly dir: string,
    /** the test's clock: Date.now() at its start */
    private readonly t0: number,
    /** the VM's screen size: frames of other sizes (the boot's text console) are fitted into it */
    private readonly size: { width: number; height: number } = { width: 1024, height: 768 },
    // twice a second: four cost the run 9 % under TCG (bench/video.bench.mjs), the encode as much again
    private readonly intervalMs = 500,
  ) {
    fs.mkdirSync(dir, { recursive: true });
  }

  /** Record `vm` until it exits (or the next attach). */
  attach(vm: QemuVm): void {
    this.vm = vm;
    clearInterval(this.timer);
    this.timer = setInterval(() => void this.capture(), this.intervalMs);
    this.timer.unref();
    vm.on("exit", () => {
      if (this.vm === vm) this.detach();
    });
  }

  detach(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.vm = undefined;
    this.endMs = Date.now() - this.t0;
  }

  private async capture(): Promise<void> {
    const vm = this.vm;
    if (this.busy || !vm?.running) return;
    this.busy = true;
    const file = path.join(this.dir, `${this.machine.slice(0, 20)}-${this.n}.png`);
    try {
      const atMs = Date.now() - this.t0;
      await vm.qmp.execute("screendump", { filename: file, format: "png" });
      const hash = createHash("sha1").update(fs.readFileSync(file)).digest("hex");
      if (hash === this.lastHash) fs.rmSync(file, { force: true });
      else {
        this.lastHash = hash;
        this.frames.push({ file, atMs });
        this.n++;
      }
      this.endMs = Date.now() - this.t0;
    } catch (e) {
      fs.rmSync(file, { force: true });
      // a VM that is pausing, migrating or exiting misses a frame; anything else is said once
      if (vm.running && !this.error) this.error = errorMessage(e);
    } finally {
      this.busy = false;
    }
  }

  /** Encode what was captured into `out` (WebM, VP8); undefined when nothing was. */
  async encode(out: string): Promise<Video | undefined> {
    this.detach();
    if (!this.frames.length) return undefined;
    const list = path.join(this.dir, `${this.machine.slice(0, 20)}.ffconcat`);
    const startMs = this.frames[0]!.atMs;
    const endMs = Math.max(this.endMs, this.frames.at(-1)!.atMs + 1000);
    const lines = ["ffconcat version 1.0"];
    this.frames.forEach((f, i) => {
      const next = this.frames[i + 1]?.atMs ?? endMs;
      lines.push(`file '${path.basename(f.file)}'`, `duration ${((next - f.atMs) / 1000).toFixed(3)}`);
    });
    // the concat demuxer takes the last entry's duration only when the file is listed again
    lines.push(`file '${path.basename(this.frames.at(-1)!.file)}'`);
    fs.writeFileSync(list, lines.join("\n") + "\n");
    fs.mkdirSync(path.dirname(out), { recursive: true });
    // The capture's own rate, constant, and a key frame every second, so a player seeks to
    // any moment; VP8's fastest settings (10 frames a second and -cpu-used 8 took twice as long).
    const fps = Math.max(1, Math.round(1000 / this.intervalMs));
    const [w, h] = [this.size.width - (this.size.width % 2), this.size.height - (this.size.height % 2)];
    await run("ffmpeg", [
      ...["-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", list],
      // one size for the whole video (VP8 cannot change it): the boot's 720×400 text console is fitted in
      ...["-vf", `fps=${fps},scale=${w}:${h}:force_original_aspect_ratio=decrease,pad=${w}:${h}:-1:-1,format=yuv420p`],
      ...["-c:v", "libvpx", "-b:v", "1M"],
      ...["-g", String(fps), "-deadline", "realtime", "-cpu-used", "16", out],
    ]);
    for (const f of this.frames) fs.rmSync(f.file, { force: true });
    return { machine: this.machine, file: out, startMs, durationMs: endMs - startMs, frames: this.frames.length };
  }
}
