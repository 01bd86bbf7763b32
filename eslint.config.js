// ESLint for the dashboard's browser code: ES modules served as they are (no build step).
// Run: npm ci && npx --no-install eslint dashboard_api/static
import js from "@eslint/js";
import globals from "globals";

export default [
  // Vendored, minified third-party code (uPlot, Swagger UI): not ours to lint.
  { ignores: ["dashboard_api/static/vendor/", "node_modules/", ".venv/"] },
  js.configs.recommended,
  {
    files: ["dashboard_api/static/**/*.js"],
    languageOptions: {
      ecmaVersion: "latest",
      sourceType: "module",
      globals: globals.browser,
    },
  },
  {
    files: ["eslint.config.js"],
    languageOptions: { sourceType: "module", globals: globals.node },
  },
];
