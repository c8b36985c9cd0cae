// The interactive API reference (Swagger UI, served by the hub itself: no CDN, venues are often offline).
// The token the board keeps in this browser loads the document (reads may need it) and nothing else: "Try it
// out" prints each request as a curl line, headers included, so a token sent on its own would be shown in clear
// to anyone looking at the screen. Requests carry a token only once it is given through "Authorize" (then
// reads too: a hub with open_reads = false wants it for them, which the document does not declare).
"use strict";

const TOKEN_KEY = "wmhub.token";

window.addEventListener("DOMContentLoaded", () => {
  const boardToken = localStorage.getItem(TOKEN_KEY) || "";
  const ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#api-docs",
    deepLinking: true,
    // otherwise a hub reached by a LAN address sends its document to the public validator for a badge
    validatorUrl: null,
    // requests from this page go to this hub only; a token never leaves for another origin
    requestInterceptor: (request) => {
      const sameHub = new URL(request.url, location.href).origin === location.origin;
      if (!sameHub || request.headers.Authorization) return request;
      const token = request.loadSpec ? boardToken : ui.authSelectors.authorized().getIn(["bearer", "value"]);
      if (token) request.headers.Authorization = "Bearer " + token;
      return request;
    },
  });
});
