// Starts Swagger UI on the /schema page (a file, not an inline script: the page's CSP allows none).
"use strict";

function csrfToken() {
  const pair = document.cookie.split("; ").find((row) => row.startsWith("csrftoken="));
  return pair === undefined ? undefined : decodeURIComponent(pair.slice("csrftoken=".length));
}

window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // "Try it out" with the session cookie: changes need the CSRF token echoed.
    requestInterceptor: (request) => {
      const token = csrfToken();
      if (token !== undefined) {
        request.headers["X-CSRFToken"] = token;
      }
      return request;
    },
  });
});
