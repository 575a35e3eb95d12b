// Every page of the web app: its path, its title, its module, and whether it
// needs a session. The server answers each path with index.html: a path added
// here is added to PAGE_PATHS in engage_http/webapp.py too (a test checks).

export const routes = [
  { path: "/", title: "Dashboard", session: true, load: () => import("./pages/dashboard.js") },
  { path: "/signin", title: "Sign in", load: () => import("./pages/signin.js") },
  { path: "/signup", title: "Create an account", load: () => import("./pages/signup.js") },
  { path: "/account", title: "Account", session: true, load: () => import("./pages/account.js") },
  { path: "/sessions", title: "Sessions", session: true, load: () => import("./pages/sessions.js") },
  { path: "/second-factor", title: "Second factor", session: true, load: () => import("./pages/second-factor.js") },
  { path: "/activity", title: "Activity", session: true, load: () => import("./pages/activity.js") },
  { path: "/api-keys", title: "API keys", session: true, load: () => import("./pages/api-keys.js") },
  { path: "/change-email", title: "Change email address", session: true, load: () => import("./pages/change-email.js") },
  { path: "/verify-email", title: "Verify your email address", load: () => import("./pages/verify-email.js") },
  { path: "/confirm-email", title: "Confirm your new email address", load: () => import("./pages/confirm-email.js") },
  { path: "/forgot-password", title: "Forgot password", load: () => import("./pages/forgot-password.js") },
  { path: "/reset-password", title: "Choose a new password", load: () => import("./pages/reset-password.js") },
];
