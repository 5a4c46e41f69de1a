// Palm's Swagger UI initializer, served by palmdao from /docs/assets/ beside
// the vendored Swagger UI (services/palmdao/assets/swagger-ui/). It is a file
// and not an inline <script> because /docs's Content-Security-Policy allows
// scripts from the page's own origin only (ADR 0026).
"use strict";

window.ui = window.SwaggerUIBundle({
  // The document of the server that served this page.
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  displayOperationId: true,
  // Swagger UI's default sends the document to validator.swagger.io for a
  // badge: nothing leaves the page's origin.
  validatorUrl: null,
  // No `?url=` / `?configUrl=` from the address bar: the page shows this
  // server's document only.
  queryConfigEnabled: false,
});
