// Logging in on the machine's screen, read by OCR, as NixOS tests do with
// `machine.wait_for_text("login:")`: what a user at the console would see.
import { defineTest } from "vmrig";

export default defineTest({
  name: "console-login",
  enableOCR: true,
  nodes: {
    machine: {
      users: { users: { alice: { isNormalUser: true, password: "wonderland" } } },
    },
  },
  async testScript({ machine }) {
    await machine.waitForUnit("getty@tty1.service");
    await machine.waitForText(/login:/);
    await machine.sendChars("alice\n");
    await machine.waitForText(/Password:/);
    await machine.sendChars("wonderland\n");
    await machine.waitUntilSucceeds("pgrep -u alice -t tty1 bash");
    await machine.sendChars("echo I am $(whoami) on $(tty)\n");
    await machine.waitForText(/I am alice on \/dev\/tty/);
    await machine.screenshot("logged-in");
  },
});
