// Every page of the web app: its path, its title, its module, and whether it
// needs a session. The server answers each path with index.html: a path added
// here is added to PAGE_PATHS in engage_http/webapp.py too (a test checks).

export const routes = [
  { path: "/", title: "Dashboard", session: true, load: () => import("./pages/dashboard.js") },
  { path: "/signin", title: "Sign in", load: () => import("./pages/signin.js") },
  { path: "/signup", title: "Create an account", load: () => import("./pages/signup.js") },
  { path: "/account", title: "Account", session: true, load: () => import("./pages/account.js") },
];
