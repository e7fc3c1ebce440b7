// Firefox on a desktop opens a page another machine serves (the seeds' browser tests): the
// window is found by its title, the page's heading is read from the screen by OCR, a link
// is clicked by its text, and the server's access log shows the request that click made.
// Firefox's first-run pages and dialogs are turned off by policy, as an administrator would,
// not by waiting them out. (Debian's firefox-esr reads /etc/firefox/policies, not
// /etc/firefox-esr: the folder is named after the application, "Firefox".)
import { defineModule, defineTest } from "vmrig";
import { desktop } from "./x11-terminal.vmrig.js";

/** A page with a heading and one link, large enough for OCR and each on one line at 1024×768. */
const page = (title: string, body: string) =>
  `<!doctype html><html><head><title>${title}</title><style>` +
  "body{font:40px sans-serif;margin:60px} h1{font-size:52px}" +
  `</style></head><body>${body}</body></html>\n`;

const policies = {
  policies: {
    DisableTelemetry: true,
    DisableFirefoxStudies: true,
    DisableProfileImport: true,
    DontCheckDefaultBrowser: true,
    OverrideFirstRunPage: "",
    OverridePostUpdatePage: "",
    NoDefaultBookmarks: true,
    UserMessaging: {
      WhatsNew: false,
      ExtensionRecommendations: false,
      FeatureRecommendations: false,
      SkipOnboarding: true,
      MoreFromMozilla: false,
    },
    DisableAppUpdate: true,
    // the privacy notice tab of a first run
    SkipTermsOfUse: true,
    Preferences: {
      "datareporting.policy.firstRunURL": { Value: "", Status: "locked" },
      // and the data-sharing bar across the page
      "datareporting.policy.dataSubmissionPolicyBypassNotification": { Value: true, Status: "locked" },
      // HTTPS-First would try https://server first, and the server's firewall drops what
      // is not port 80: the page would wait for that attempt to time out
      "dom.security.https_first": { Value: false, Status: "locked" },
      "dom.security.https_first_schemeless": { Value: false, Status: "locked" },
    },
  },
};

/** alice's IceWM desktop of the x11-terminal example, with Firefox ESR. */
const browser = defineModule({
  imports: [desktop],
  environment: {
    systemPackages: ["firefox-esr"],
    etc: {
      "firefox/policies/policies.json": { text: JSON.stringify(policies, null, 2) },
      // Debian's firefox-esr also reads the preference files in /etc/firefox-esr. Under
      // software emulation every process Firefox starts costs seconds: one content
      // process, no site isolation. And WebRender's software renderer, not GL on llvmpipe,
      // whose shaders LLVM compiles under emulation: a page then takes half as long to appear
      // (measured: a click to the next page in 27 s against 60 s).
      "firefox-esr/vmrig.js": {
        text: [
          'pref("fission.autostart", false);',
          'pref("dom.ipc.processCount", 1);',
          'pref("gfx.webrender.software", true);',
          "",
        ].join("\n"),
      },
    },
  },
  virtualisation: { memorySize: 2048 },
});

export default defineTest({
  name: "firefox",
  enableOCR: true,
  nodes: {
    server: {
      networking: { firewall: { allowedTCPPorts: [80] } },
      environment: {
        etc: {
          "site/index.html": {
            text: page(
              "Front door",
              "<h1>Hello from the server</h1><p><a href='/garden.html'>Enter the garden</a></p>",
            ),
          },
          "site/garden.html": { text: page("Garden", "<h1>You are in the garden</h1>") },
        },
      },
      services: { nginx: { enable: true, virtualHosts: { server: { root: "/etc/site" } } } },
    },
    client: browser,
  },
  async testScript({ server, client }) {
    await server.waitForUnit("nginx.service");
    await client.waitForX();
    await client.succeed("su - alice -c 'DISPLAY=:0 firefox-esr http://server/ >/dev/null 2>&1 &'");
    await client.waitForWindow(/Firefox/);
    await client.waitForText(/Hello from the server/);
    await client.clickText(/garden/);
    await client.waitForText(/You are in the garden/);
    // the click made the request: nginx logged it, coming from the client
    await server.waitUntilSucceeds("grep -E 'GET /garden.html HTTP/1.1\" 200' /var/log/nginx/access.log");
    await client.screenshot("garden");
  },
});
