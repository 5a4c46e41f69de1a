// `make check-docs-page`'s browser half (scripts/docs-page/check.sh starts
// palmdao and runs this): loads palmdao's /docs in headless Debian Chromium
// with every request off the server's origin refused, and proves that
//   1. the harness is offline: a fetch to the public CDN fails, and the old
//      CDN-based page (kept below as a control) renders nothing under it;
//   2. /docs and its assets come with the security and cache headers
//      ADR 0026 sets (CSP without 'unsafe-*', nosniff, immutable assets,
//      gzip), and an unknown asset is a problem document;
//   3. Swagger UI renders every operation of /openapi.json (method, path and
//      operationId, no more, no fewer), each operation expands, and "Try it
//      out" / "Execute" on GET /v1/auth/nonce gets a 200 from the server;
//   4. through all of it: no request left the origin, no CSP violation, no
//      console error or warning, no page error, no failed or 4xx/5xx request.
// Usage: node docs-page.cjs <playwright-core module dir> <chromium> <base url>
"use strict";

const [modulePath, executablePath, base] = process.argv.slice(2);
if (!modulePath || !executablePath || !base) {
  console.error("usage: node docs-page.cjs <playwright-core dir> <chromium> <base url>");
  process.exit(2);
}
const { chromium } = require(modulePath);
const origin = new URL(base).origin;
const failures = [];
const fail = (message) => {
  failures.push(message);
  console.error(`  FAIL ${message}`);
};
const t0 = Date.now();
const note = (message) => console.error(`  [${((Date.now() - t0) / 1000).toFixed(1)} s] ${message}`);

// The page palmdao served before issue 14: Swagger UI from unpkg. Offline it
// must render nothing, or this harness cannot tell a vendored page from one
// that needs the network.
const CDN_PAGE = `<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js" crossorigin></script>
<script>window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" });</script>
</body></html>`;

const REQUIRED_CSP = {
  "default-src": ["'none'"],
  "script-src": ["'self'"],
  "style-src": ["'self'"],
  "img-src": ["'self'", "data:"],
  "connect-src": ["'self'"],
  "frame-ancestors": ["'none'"],
  "base-uri": ["'none'"],
};

async function documentedOperations() {
  const response = await fetch(`${base}/openapi.json`);
  if (!response.ok) throw new Error(`/openapi.json: ${response.status}`);
  const document = await response.json();
  const operations = [];
  for (const [path, item] of Object.entries(document.paths)) {
    for (const method of ["get", "put", "post", "delete", "patch", "head", "options", "trace"]) {
      if (item[method]) {
        operations.push(`${method.toUpperCase()} ${path} ${item[method].operationId}`);
      }
    }
  }
  return { operations: operations.sort(), schemas: Object.keys(document.components?.schemas ?? {}).sort() };
}

function checkCsp(value) {
  if (!value) return fail("/docs has no Content-Security-Policy");
  const directives = Object.fromEntries(
    value.split(";").map((d) => d.trim().split(/\s+/)).filter((d) => d[0]).map(([n, ...v]) => [n, v]),
  );
  for (const [name, sources] of Object.entries(REQUIRED_CSP)) {
    const got = directives[name];
    if (!got || got.join(" ") !== sources.join(" ")) {
      fail(`CSP ${name} is ${got ? got.join(" ") : "missing"}, want ${sources.join(" ")}`);
    }
  }
  if (/unsafe-|\*|https?:/.test(value)) fail(`CSP allows too much: ${value}`);
}

async function checkHeaders(page, assetResponses) {
  note("headers of /docs and its assets");
  const docs = await fetch(`${base}/docs`);
  checkCsp(docs.headers.get("content-security-policy"));
  if (docs.headers.get("x-content-type-options") !== "nosniff") fail("/docs: no nosniff");
  if (!/^text\/html/.test(docs.headers.get("content-type") || "")) fail("/docs: not text/html");
  const html = await docs.text();
  if (/<script(?![^>]*\bsrc=)/.test(html) || /<style|style=/.test(html)) fail("/docs has inline script or style");
  const want = { js: /^text\/javascript/, css: /^text\/css/, png: /^image\/png/ };
  const seen = new Set();
  for (const response of assetResponses) {
    const url = new URL(response.url());
    const kind = url.pathname.split(".").pop();
    seen.add(kind);
    const headers = await response.allHeaders();
    if (!want[kind] || !want[kind].test(headers["content-type"] || "")) {
      fail(`${url.pathname}: content-type ${headers["content-type"]}`);
    }
    if (headers["x-content-type-options"] !== "nosniff") fail(`${url.pathname}: no nosniff`);
    if (!/max-age=31536000/.test(headers["cache-control"] || "") || !/immutable/.test(headers["cache-control"] || "")) {
      fail(`${url.pathname}: cache-control ${headers["cache-control"]}`);
    }
    if (/swagger-ui/.test(url.pathname) && headers["content-encoding"] !== "gzip") {
      fail(`${url.pathname}: not sent gzip-encoded to a browser`);
    }
  }
  for (const kind of ["js", "css"]) if (!seen.has(kind)) fail(`no .${kind} asset loaded by /docs`);
  const missing = await fetch(`${base}/docs/assets/swagger-ui-bundle.0000000000000000.js`);
  if (missing.status !== 404 || !/problem\+json/.test(missing.headers.get("content-type") || "")) {
    fail(`an unknown asset answers ${missing.status} ${missing.headers.get("content-type")}`);
  }
  // Without Accept-Encoding (curl, scripts) the file itself, not its gzip.
  const bundle = assetResponses.find((r) => /swagger-ui-bundle\./.test(r.url()));
  if (bundle) {
    const plain = await fetch(bundle.url(), { headers: { "accept-encoding": "identity" } });
    const text = await plain.text();
    if (plain.headers.get("content-encoding") || !text.includes("SwaggerUIBundle")) {
      fail("the bundle asked for without gzip is not the plain file");
    }
  }
}

async function main() {
  const { operations: expected, schemas } = await documentedOperations();
  note(`/openapi.json documents ${expected.length} operations and ${schemas.length} schemas`);
  if (expected.length < 20) fail(`only ${expected.length} operations documented`);

  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // Second fence behind the request interception below: no host name
      // resolves, only the loopback address the server listens on.
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ],
  });
  note(`browser: ${browser.version()}`);
  const context = await browser.newContext({ serviceWorkers: "block" });
  context.setDefaultTimeout(60000);
  const offOrigin = [];
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    offOrigin.push(url);
    return route.abort("internetdisconnected");
  });
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`);
    });
  });

  // 1. The harness is offline.
  {
    const page = await context.newPage();
    await page.goto(`${base}/openapi.json`);
    const cdn = await page.evaluate(() =>
      fetch("https://unpkg.com/swagger-ui-dist@5/swagger-ui.css").then(() => "fetched", (e) => `refused: ${e.message}`),
    );
    if (cdn === "fetched") fail("a request to unpkg.com got through: the browser is not offline");
    await page.setContent(CDN_PAGE, { waitUntil: "load" });
    await page.waitForTimeout(500);
    const rendered = await page.evaluate(() => [typeof window.SwaggerUIBundle, document.querySelectorAll(".opblock").length]);
    if (rendered[0] !== "undefined" || rendered[1] !== 0) fail(`the CDN page rendered offline: ${rendered}`);
    note(`offline: a CDN fetch is ${cdn}; the old CDN page renders ${rendered[1]} operations (SwaggerUIBundle ${rendered[0]})`);
    if (offOrigin.length < 3) fail(`only ${offOrigin.length} off-origin requests refused in the control`);
    await page.close();
    offOrigin.length = 0;
  }

  // 2-4. The served page.
  const page = await context.newPage();
  const problems = [];
  const assetResponses = [];
  page.on("console", (message) => {
    if (["error", "warning", "assert"].includes(message.type())) problems.push(`console ${message.type()}: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("requestfailed", (request) => problems.push(`request failed: ${request.url()} ${request.failure()?.errorText}`));
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`${response.status()} for ${response.url()}`);
    if (new URL(response.url()).pathname.startsWith("/docs/assets/")) assetResponses.push(response);
  });

  const started = Date.now();
  const navigation = await page.goto(`${base}/docs`, { waitUntil: "load" });
  if (navigation.status() !== 200) fail(`/docs answered ${navigation.status()}`);
  await page.waitForFunction((n) => document.querySelectorAll(".opblock").length >= n, expected.length, { timeout: 60000 })
    .catch(() => fail(`fewer than ${expected.length} operations rendered within 60 s`));
  const renderMs = Date.now() - started;
  const title = await page.locator(".info .title").first().textContent().catch(() => "");
  if (!/Palm API/.test(title)) fail(`the page's title is ${JSON.stringify(title)}`);

  const rendered = (
    await page.$$eval(".opblock", (blocks) =>
      blocks.map((block) => {
        const text = (selector) => block.querySelector(selector)?.textContent.trim() ?? "";
        const path = block.querySelector(".opblock-summary-path")?.getAttribute("data-path") ?? "";
        return `${text(".opblock-summary-method")} ${path} ${text(".opblock-summary-operation-id")}`;
      }),
    )
  ).sort();
  const missing = expected.filter((op) => !rendered.includes(op));
  const extra = rendered.filter((op) => !expected.includes(op));
  for (const op of missing) fail(`not listed on /docs: ${op}`);
  for (const op of extra) fail(`listed on /docs but not in /openapi.json: ${op}`);
  note(`rendered ${rendered.length} operations in ${renderMs} ms (load to the last one); missing ${missing.length}, extra ${extra.length}`);

  // "Try it out" on the nonce: a same-origin call through connect-src 'self'.
  const nonce = page.locator("#operations-auth-getNonce");
  await nonce.locator(".opblock-summary-control").click();
  await nonce.locator("button.try-out__btn").click();
  await nonce.locator("button.execute").click();
  const status = await nonce
    .locator(".live-responses-table tr.response .response-col_status")
    .first()
    .textContent({ timeout: 60000 })
    .catch(() => "none");
  if (status.trim() !== "200") fail(`Execute on getNonce showed status ${status.trim()}`);
  note(`Try it out → Execute on GET /v1/auth/nonce: ${status.trim()}`);

  // The Authorize dialog (the bearer session scheme) opens and closes.
  await page.locator(".auth-wrapper button.authorize").click();
  const schemes = await page.locator(".modal-ux .auth-container").count();
  await page.locator(".modal-ux button.close-modal").click();
  if (schemes < 1) fail("the Authorize dialog shows no security scheme");
  note(`Authorize dialog: ${schemes} scheme(s)`);

  // Every operation opens (parameters, request bodies, responses, schemas):
  // clicked in the page, in one go. Rendering them all takes Swagger UI
  // seconds per operation on a loaded 2-core machine, hence the long wait.
  const opened = await page.evaluate(() => {
    const closed = [...document.querySelectorAll(".opblock:not(.is-open) .opblock-summary-control")];
    closed.forEach((button) => button.click());
    return closed.length;
  });
  await page
    .waitForFunction((n) => document.querySelectorAll(".opblock.is-open .responses-wrapper").length >= n, expected.length, { timeout: 180000 })
    .catch(() => fail(`not every one of ${expected.length} operations opened within 180 s`));
  note(`opened the other ${opened} operations`);

  // Every schema is listed, and each opens all the way down.
  const listed = (
    await page.$$eval('.models article[data-json-schema-level="0"]', (articles) =>
      articles.map((a) => a.querySelector(".json-schema-2020-12__title")?.textContent.trim() ?? ""),
    )
  ).sort();
  for (const name of schemas.filter((n) => !listed.includes(n))) fail(`schema not listed on /docs: ${name}`);
  if (schemas.length < 10) fail(`only ${schemas.length} schemas documented`);
  const deep = await page.evaluate(() => {
    const buttons = [...document.querySelectorAll('.models article[data-json-schema-level="0"] > .json-schema-2020-12-head .json-schema-2020-12-expand-deep-button')];
    buttons.forEach((button) => button.click());
    return buttons.length;
  });
  await page
    .waitForFunction((n) => document.querySelectorAll('.models article[data-json-schema-level="0"] > .json-schema-2020-12-body:not(.json-schema-2020-12-body--collapsed)').length >= n, schemas.length, { timeout: 120000 })
    .catch(() => fail("the schemas did not open"));
  const expandedSchemas = await page.locator('.models article[data-json-schema-level="0"] > .json-schema-2020-12-body:not(.json-schema-2020-12-body--collapsed)').count();
  if (expandedSchemas < schemas.length) fail(`${expandedSchemas} of ${schemas.length} schemas opened`);
  const nested = await page.locator('.models article[data-json-schema-level]:not([data-json-schema-level="0"])').count();
  note(`${listed.length} schemas listed, ${expandedSchemas} opened all the way down (${deep} "Expand all", ${nested} nested schemas shown)`);

  await checkHeaders(page, assetResponses);

  const csp = await page.evaluate(() => window.__csp);
  for (const violation of csp) fail(`CSP violation: ${violation}`);
  for (const problem of problems) fail(problem);
  for (const url of offOrigin) fail(`the page tried to leave the origin: ${url}`);
  note(`CSP violations ${csp.length}, console/page/request problems ${problems.length}, off-origin requests ${offOrigin.length}`);
  await browser.close();
}

main().then(
  () => {
    if (failures.length) {
      console.error(`check-docs-page: FAIL (${failures.length} problems)`);
      process.exit(1);
    }
    console.error("check-docs-page: ok");
  },
  (error) => {
    console.error(`check-docs-page: FAIL ${error.stack || error}`);
    process.exit(1);
  },
);
