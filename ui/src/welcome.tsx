// The first thing a new user sees (on the Overview) while there is no account: the three ways
// to add one, recommended first, and what comes next. It goes away when an account appears.
import { useEffect, useState } from "preact/hooks";
import { api } from "./api";
import { ClaudeCodeConnect } from "./claudecode";
import { desktop } from "./desktop";
import { claudeCodeSnippet, passthroughFile } from "./format";
import { Link } from "./router";

export function Welcome(props: { onError: (e: unknown) => void }) {
  const [empty, setEmpty] = useState(false);
  const [baseUrl, setBaseUrl] = useState("http://127.0.0.1:3000");
  const [credentialsDir, setCredentialsDir] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    api
      .accounts()
      .then((r) => live && setEmpty(r.accounts.length === 0))
      .catch(props.onError);
    return () => {
      live = false;
    };
  }, []);

  // While shown: the proxy's address for the snippets, and an account added anywhere (a
  // credential file, the Accounts page, Connect Claude Code) hides the guide at once.
  useEffect(() => {
    if (!empty) return;
    api
      .keys()
      .then((r) => r.base_url && setBaseUrl(r.base_url))
      .catch(props.onError);
    desktop
      ?.info()
      .then((i) => setCredentialsDir(i.credentials_dir))
      .catch(() => undefined);
    const events = new EventSource("/api/events");
    events.addEventListener("account", () => setEmpty(false));
    return () => events.close();
  }, [empty]);

  if (!empty) return null;
  return (
    <section class="card welcome" aria-labelledby="welcome-title">
      <h2 id="welcome-title">Welcome: add an account to start</h2>
      <p>The proxy forwards requests to Anthropic with an account's credential. There are three ways to add one; the first is recommended.</p>
      <ol class="ways">
        <li>
          <h3>Use Claude Code's own login (recommended for Pro/Max)</h3>
          <p>
            Passthrough: Claude Code keeps its own login and sends it through the proxy untouched, so the proxy never holds your
            subscription token. Every request is still metered and recorded.
          </p>
          {desktop && <ClaudeCodeConnect desktop={desktop} />}
          <p class="muted small">{desktop ? "What Connect Claude Code sets up, should you do it by hand:" : "Two steps:"}</p>
          <ol class="steps">
            <li>
              A credential file in the credentials directory (
              {credentialsDir ? (
                <code>{credentialsDir}</code>
              ) : (
                <>
                  <code>CREDENTIALS_DIR</code>, <code>./credentials</code> by default
                </>
              )}
              ),{" "}
              <code data-testid="passthrough-file-name">{passthroughFile.name}</code> (the name is the account's domain), readable only by you (<code>chmod 600</code>):
              <pre class="snippet" data-testid="passthrough-file">
                {passthroughFile.text}
              </pre>
            </li>
            <li>
              A client key for that account (<Link href="/accounts#client-keys">create it on Accounts &amp; keys</Link>), which
              Claude Code sends in the <code>x-nexus-key</code> header, next to its own login:
              <pre class="snippet">{claudeCodeSnippet(baseUrl, "cnp_live_…", true)}</pre>
            </li>
          </ol>
        </li>
        <li>
          <h3>An Anthropic API key, stored in the OS keychain</h3>
          <p>
            Pay-as-you-go API access: <Link href="/accounts#add-api-key">add an API-key account</Link> on Accounts &amp; keys. The key
            goes to the keychain; the credential file only names it.
          </p>
        </li>
        <li>
          <h3>Log in with a Claude Pro/Max account (OAuth)</h3>
          <p>
            The proxy holds and refreshes the tokens: <Link href="/accounts#oauth-login">log in with Claude</Link> on Accounts &amp;
            keys.
          </p>
          <p class="muted">
            Anthropic's terms limit Claude Pro/Max credentials to Anthropic's own clients, such as Claude Code. Prefer option 1 for
            Claude Code.
          </p>
        </li>
      </ol>
      <h3>Then</h3>
      <ol class="next">
        <li>
          <Link href="/accounts#client-keys">Create a client key</Link> for the account; it is shown once.
        </li>
        {desktop ? (
          <li>
            Connect Claude Code (above, or on <Link href="/accounts">Accounts &amp; keys</Link>), so that it uses the proxy.
          </li>
        ) : (
          <li>
            Point Claude Code at the proxy, in your shell (the Accounts page shows these lines with the new key):
            <pre class="snippet">{claudeCodeSnippet(baseUrl, "cnp_live_…")}</pre>
            For a passthrough account, use the <code>x-nexus-key</code> lines of option 1 instead.
          </li>
        )}
      </ol>
    </section>
  );
}
