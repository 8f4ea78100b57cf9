// Render Mermaid diagrams to SVG with the real renderer: mermaid-cli's renderMermaid in
// headless Chromium, one browser launch for all of them.
//
//   node scripts/render_mermaid.mjs IN.json OUT.json
//
// IN.json is {"name": "<mermaid text>", ...}; OUT.json gets {"name": {"svg": "..."}} or
// {"name": {"error": "..."}} per diagram, plus "_browser" (the Chromium version). Exit 0
// when every diagram rendered, 1 when one failed, 2 when the browser did not start.
//
// Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM); npm's puppeteer is installed
// without its own browser download (PUPPETEER_SKIP_DOWNLOAD, npm ci --ignore-scripts).
// The flags keep Chromium off the network (which CI does not have). --no-sandbox: Chromium
// refuses to start as root without it, and Ubuntu 24.04 blocks its sandbox for unprivileged
// users; the page only ever renders the diagram text given here.
import fs from "node:fs";
import puppeteer from "puppeteer";
import { renderMermaid } from "@mermaid-js/mermaid-cli";

const [input, output] = process.argv.slice(2);
const diagrams = JSON.parse(fs.readFileSync(input, "utf8"));
const args = [
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-sandbox",
];

let browser;
try {
  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args,
  });
} catch (err) {
  console.error(`Chromium did not start: ${err}`);
  process.exit(2);
}
const results = { _browser: await browser.version() };
let failed = false;
try {
  for (const [name, text] of Object.entries(diagrams)) {
    try {
      const { data } = await renderMermaid(browser, text, "svg", { svgId: name });
      results[name] = { svg: new TextDecoder().decode(data) };
    } catch (err) {
      results[name] = { error: String(err && err.message ? err.message : err) };
      failed = true;
    }
  }
} finally {
  await browser.close();
}
fs.writeFileSync(output, JSON.stringify(results));
process.exit(failed ? 1 : 0);
