// Swagger UI over the server's OpenAPI description, from the package's own copy (no CDN).
window.addEventListener("DOMContentLoaded", () => {
  window.SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
