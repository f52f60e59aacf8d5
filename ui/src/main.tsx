import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, ApiError } from "./api";
import { Login } from "./pages/Login";
import { OverviewPage } from "./pages/Overview";
import { RequestsPage } from "./pages/Requests";
import { RequestDetailPage } from "./pages/RequestDetail";
import { ConversationsPage } from "./pages/Conversations";
import { ConversationPage } from "./pages/Conversation";
import { SecurityPage } from "./pages/Security";
import { MonitoringPage } from "./pages/Monitoring";
import { AccountsPage } from "./pages/Accounts";
import { SettingsPage } from "./pages/Settings";
import { desktop, openExternalLinksWith } from "./desktop";
import { navigate, usePath, Link } from "./router";
import "./style.css";

type Session = "checking" | "out" | "in";

function App() {
  const path = usePath();
  const [session, setSession] = useState<Session>("checking");

  useEffect(() => {
    api
      .session()
      .then((s) => setSession(s.authenticated ? "in" : "out"))
      .catch(() => setSession("out"));
  }, []);

  if (session === "checking") return <p class="loading">Loading…</p>;
  if (session === "out" || path === "/login") {
    return (
      <Login
        onLoggedIn={() => {
          setSession("in");
          if (path === "/login") navigate("/");
        }}
      />
    );
  }

  const logout = async () => {
    await api.logout().catch(() => undefined);
    setSession("out");
  };
  const onAuthError = (e: unknown) => {
    if (e instanceof ApiError && e.status === 401) setSession("out");
  };

  let page;
  let title;
  if (path.startsWith("/requests/")) {
    title = "Request";
    page = <RequestDetailPage id={decodeURIComponent(path.slice("/requests/".length))} onError={onAuthError} />;
  } else if (path.startsWith("/conversations/")) {
    title = "Conversation";
    page = <ConversationPage id={decodeURIComponent(path.slice("/conversations/".length))} onError={onAuthError} />;
  } else if (path === "/conversations") {
    title = "Conversations";
    page = <ConversationsPage onError={onAuthError} />;
  } else if (path === "/security") {
    title = "Security";
    page = <SecurityPage onError={onAuthError} />;
  } else if (path === "/accounts") {
    title = "Accounts & keys";
    page = <AccountsPage onError={onAuthError} />;
  } else if (path === "/monitoring") {
    title = "Monitoring";
    page = <MonitoringPage onError={onAuthError} />;
  } else if (path === "/settings") {
    title = "Settings";
    page = desktop ? (
      <SettingsPage desktop={desktop} />
    ) : (
      <p class="muted">These settings belong to the desktop app; the server takes its settings from environment variables.</p>
    );
  } else if (path === "/requests") {
    title = "Requests";
    page = <RequestsPage onError={onAuthError} />;
  } else {
    title = "Overview";
    page = <OverviewPage onError={onAuthError} />;
  }

  return (
    <div class="layout">
      <a class="skip" href="#main">Skip to content</a>
      <header class="topbar">
        <span class="brand">Claude Nexus</span>
        <nav aria-label="Main">
          <Link href="/" current={path === "/"}>Overview</Link>
          <Link href="/requests" current={path.startsWith("/requests")}>Requests</Link>
          <Link href="/conversations" current={path.startsWith("/conversations")}>Conversations</Link>
          <Link href="/accounts" current={path === "/accounts"}>Accounts &amp; keys</Link>
          <Link href="/security" current={path === "/security"}>Security</Link>
          <Link href="/monitoring" current={path === "/monitoring"}>Monitoring</Link>
          {desktop && (
            <Link href="/settings" current={path === "/settings"}>Settings</Link>
          )}
        </nav>
        <button type="button" class="secondary" onClick={logout}>
          Log out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        <h1>{title}</h1>
        {page}
      </main>
    </div>
  );
}

// In the desktop app, links to other sites open in the system browser, not a new app window.
if (desktop) openExternalLinksWith(desktop);

render(<App />, document.getElementById("app")!);
