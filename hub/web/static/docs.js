// The interactive API reference (Swagger UI, served by the hub itself: no CDN, venues are often offline).
// It reuses the token the board keeps in this browser, so the document loads when reads need the token
// and "Try it out" can send writes; a token given through "Authorize" takes precedence.
"use strict";

const TOKEN_KEY = "wmhub.token";

window.addEventListener("DOMContentLoaded", () => {
  const token = localStorage.getItem(TOKEN_KEY) || "";
  const ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#api-docs",
    deepLinking: true,
    // otherwise a hub reached by a LAN address sends its document to the public validator for a badge
    validatorUrl: null,
    // requests from this page go to this hub only; the token never leaves for another origin
    requestInterceptor: (request) => {
      const sameHub = new URL(request.url, location.href).origin === location.origin;
      if (token && sameHub && !request.headers.Authorization) {
        request.headers.Authorization = "Bearer " + token;
      }
      return request;
    },
  });
  if (token) ui.preauthorizeApiKey("bearer", token);
});
