import type { ComponentChildren } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { api, type AccountInfo, type ClientKeyInfo, type CreatedClientKey, type LimitEntry, type OAuthFinished } from "../api";
import { accountStatus, claudeCodeSnippet, formatRelative, formatTime, keyRows, upsertAccount } from "../format";
import { PlanGauges } from "../gauges";
import { ClaudeCodeCard } from "../claudecode";
import { LimitsCard } from "../limits";
import { desktop } from "../desktop";
import { OutcomeLine, type Outcome } from "../outcome";
import { Link } from "../router";

const TYPE: Record<AccountInfo["type"], string> = { api_key: "API key", oauth: "Claude login (OAuth)", passthrough: "Passthrough" };
const SECRET: Record<AccountInfo["secret"], string> = { keychain: "Keychain", inline: "In the file", none: "–" };

/** How often the limits' use is read again while the page is shown. */
const LIMITS_REFRESH_MS = 10_000;

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

export function AccountsPage(props: { onError: (e: unknown) => void }) {
  const [accounts, setAccounts] = useState<AccountInfo[] | null>(null);
  const [keys, setKeys] = useState<ClientKeyInfo[] | null>(null);
  const [baseUrl, setBaseUrl] = useState<string | null>(null);
  const [limits, setLimits] = useState<LimitEntry[] | null>(null);
  const [error, setError] = useState("");

  const fail = (e: unknown) => {
    props.onError(e);
    setError(message(e));
  };
  const loadAccounts = () =>
    api
      .accounts()
      .then((r) => setAccounts(r.accounts))
      .catch(fail);
  const loadKeys = () =>
    api
      .keys()
      .then((r) => {
        setKeys(r.keys);
        setBaseUrl(r.base_url);
      })
      .catch(fail);
  const loadLimits = () =>
    api
      .limits()
      .then((r) => setLimits(r.limits))
      .catch(fail);

  useEffect(() => {
    void loadAccounts();
    void loadKeys();
    void loadLimits();
  }, []);

  // Requests per minute slide down as time passes, and windows end: the gauges are read
  // again every few seconds, as well as after requests.
  useEffect(() => {
    const timer = window.setInterval(() => {
      if (document.visibilityState === "visible") void loadLimits();
    }, LIMITS_REFRESH_MS);
    return () => window.clearInterval(timer);
  }, []);

  // A link to a card here (/accounts#client-keys, from the welcome guide) scrolls to it.
  useEffect(() => {
    if (accounts && location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
  }, [accounts !== null]);

  // Account changes arrive as `account` events, key changes (from here, the CLI or another
  // instance) as `keys` events; a request may move a key's "last used" and its limits' use.
  const keysDue = useRef<number | null>(null);
  useEffect(() => {
    const events = new EventSource("/api/events");
    events.addEventListener("account", (e) => {
      const fresh = JSON.parse((e as MessageEvent<string>).data) as AccountInfo;
      setAccounts((old) => upsertAccount(old ?? [], fresh));
    });
    events.addEventListener("account_removed", (e) => {
      const { domain } = JSON.parse((e as MessageEvent<string>).data) as { domain: string };
      setAccounts((old) => (old ?? []).filter((a) => a.domain !== domain));
    });
    events.addEventListener("keys", () => void loadKeys());
    events.addEventListener("request", () => {
      if (keysDue.current !== null) return;
      keysDue.current = window.setTimeout(() => {
        keysDue.current = null;
        void loadKeys();
        void loadLimits();
      }, 1000);
    });
    return () => {
      events.close();
      if (keysDue.current !== null) window.clearTimeout(keysDue.current);
    };
  }, []);

  return (
    <>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <section class="card" aria-labelledby="accounts-title">
        <h2 id="accounts-title">Accounts</h2>
        {!accounts ? (
          <p class="loading">Loading…</p>
        ) : accounts.length === 0 ? (
          <p class="muted">
            No accounts yet: the <Link href="/">welcome guide</Link> on the Overview shows the three ways to add one.
          </p>
        ) : (
          <div class="table-wrap">
            <table aria-label="Accounts">
              <thead>
                <tr>
                  <th scope="col">Domain</th>
                  <th scope="col">Account ID</th>
                  <th scope="col">Type</th>
                  <th scope="col">Secret</th>
                  <th scope="col">Status</th>
                  <th scope="col">Token expires</th>
                  <th scope="col">Plan usage</th>
                </tr>
              </thead>
              <tbody>
                {accounts.map((a) => {
                  const status = accountStatus(a);
                  return (
                    <tr data-domain={a.domain}>
                      <td>{a.domain}</td>
                      <td>{a.account_id ?? "–"}</td>
                      <td>
                        {TYPE[a.type]}
                        {a.oauth?.is_max && <span class="tag">Max</span>}
                      </td>
                      <td>{SECRET[a.secret]}</td>
                      <td>
                        <span class={`badge ${status.tone}`}>{status.text}</span>
                        {a.oauth?.last_refresh_error && <div class="small error">{a.oauth.last_refresh_error}</div>}
                      </td>
                      <td title={a.oauth?.expires_at ? formatTime(a.oauth.expires_at) : undefined}>
                        {a.oauth ? formatRelative(a.oauth.expires_at) : "–"}
                      </td>
                      <td>{a.type === "oauth" ? <PlanGauges account={a} /> : <span class="muted">–</span>}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </section>
      {desktop && <ClaudeCodeCard desktop={desktop} />}
      <div class="grid2 even">
        <AddApiKeyAccount onAdded={(a) => setAccounts((old) => upsertAccount(old ?? [], a))} onError={props.onError} />
        <OAuthLogin onDone={() => void loadAccounts()} onError={props.onError} />
      </div>
      <ClientKeys
        keys={keys}
        baseUrl={baseUrl}
        accounts={accounts ?? []}
        reload={loadKeys}
        onError={props.onError}
      />
      <LimitsCard accounts={accounts} keys={keys} limits={limits} reload={loadLimits} onError={props.onError} />
    </>
  );
}

function AddApiKeyAccount(props: { onAdded: (a: AccountInfo) => void; onError: (e: unknown) => void }) {
  const [domain, setDomain] = useState("");
  const [apiKey, setApiKey] = useState("");
  const [accountId, setAccountId] = useState("");
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<Outcome | null>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setResult(null);
    try {
      const added = await api.addAccount({ domain, api_key: apiKey, ...(accountId.trim() ? { account_id: accountId.trim() } : {}) });
      props.onAdded(added);
      setResult({ ok: true, text: `Added ${added.domain}; its key is in the keychain.` });
      setDomain("");
      setApiKey("");
      setAccountId("");
    } catch (err) {
      props.onError(err);
      setResult({ ok: false, text: message(err) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="card" id="add-api-key" aria-labelledby="add-account-title">
      <h2 id="add-account-title">Add an API-key account</h2>
      <form class="stack" onSubmit={submit}>
        <label>
          Domain
          <input value={domain} onInput={(e) => setDomain((e.target as HTMLInputElement).value)} placeholder="work.example" required />
        </label>
        <label>
          Anthropic API key
          <input type="password" autocomplete="off" value={apiKey} onInput={(e) => setApiKey((e.target as HTMLInputElement).value)} placeholder="sk-ant-api03-…" required />
        </label>
        <label>
          Account ID <span class="muted small">(optional; the domain when empty)</span>
          <input value={accountId} onInput={(e) => setAccountId((e.target as HTMLInputElement).value)} />
        </label>
        <div>
          <button type="submit" disabled={busy}>
            Add account
          </button>
        </div>
        <OutcomeLine outcome={result} />
      </form>
    </section>
  );
}

function OAuthLogin(props: { onDone: () => void; onError: (e: unknown) => void }) {
  const [domain, setDomain] = useState("");
  const [pending, setPending] = useState<{ login_id: string; authorize_url: string; domain: string } | null>(null);
  const [code, setCode] = useState("");
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<Outcome | null>(null);
  // The client key the login wrote into a new credential file: this answer is its only showing.
  const [written, setWritten] = useState<OAuthFinished | null>(null);

  const start = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setResult(null);
    setWritten(null);
    try {
      const started = await api.oauthStart(domain);
      setPending({ ...started, domain: domain.trim().toLowerCase() });
      setCode("");
    } catch (err) {
      props.onError(err);
      setResult({ ok: false, text: message(err) });
    } finally {
      setBusy(false);
    }
  };

  const finish = async (e: Event) => {
    e.preventDefault();
    if (!pending) return;
    setBusy(true);
    setResult(null);
    try {
      const finished = await api.oauthFinish(pending.login_id, code);
      setResult({
        ok: true,
        text: finished.client_key
          ? `Logged in: ${finished.domain} is saved and loaded, with a new client key.`
          : `Logged in: ${finished.domain} is saved and loaded; it keeps its client keys.`,
      });
      setWritten(finished.client_key ? finished : null);
      setPending(null);
      setDomain("");
      setCode("");
      props.onDone();
    } catch (err) {
      props.onError(err);
      setResult({ ok: false, text: message(err) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="card" id="oauth-login" aria-labelledby="oauth-title">
      <h2 id="oauth-title">Log in with Claude (Pro/Max)</h2>
      <p class="muted small">
        Anthropic's terms limit Claude Pro/Max credentials to Anthropic's own clients, such as Claude Code. For Claude Code, prefer
        a passthrough account: Claude Code keeps its own login.
      </p>
      {!pending ? (
        <form class="stack" onSubmit={start}>
          <label>
            Domain for the account
            <input value={domain} onInput={(e) => setDomain((e.target as HTMLInputElement).value)} placeholder="me.example" required />
          </label>
          <div>
            <button type="submit" disabled={busy}>
              Start login
            </button>
          </div>
        </form>
      ) : (
        <form class="stack" onSubmit={finish}>
          <p>
            1.{" "}
            <a href={pending.authorize_url} target="_blank" rel="noopener noreferrer">
              Open the Claude login page
            </a>{" "}
            and log in.
          </p>
          <label>
            2. Paste the code it shows (code#state)
            <input value={code} onInput={(e) => setCode((e.target as HTMLInputElement).value)} autocomplete="off" required />
          </label>
          <div class="row">
            <button type="submit" disabled={busy}>
              Finish login
            </button>
            <button type="button" class="secondary" onClick={() => setPending(null)}>
              Cancel
            </button>
          </div>
        </form>
      )}
      <OutcomeLine outcome={result} />
      {written?.client_key && (
        <ShownKey
          label="Client key of the login"
          testId="login-key"
          secret={written.client_key}
          baseUrl={written.base_url}
          onDone={() => setWritten(null)}
        >
          <strong>Client key for {written.domain}</strong>, written to its credential file (<code>{written.file}</code>). Copy it now: it
          is not shown again.
        </ShownKey>
      )}
    </section>
  );
}

/** A client key shown once (just made, or written by a login): copy buttons and the Claude Code snippet. */
function ShownKey(props: {
  label: string;
  testId: string;
  secret: string;
  baseUrl: string | null;
  passthrough?: boolean;
  onDone: () => void;
  children: ComponentChildren;
}) {
  const region = useRef<HTMLDivElement>(null);
  useLayoutEffect(() => region.current?.focus(), [props.secret]);
  const snippet = props.baseUrl ? claudeCodeSnippet(props.baseUrl, props.secret, props.passthrough) : null;
  return (
    <div class="created" ref={region} tabIndex={-1} role="region" aria-label={props.label}>
      <p>{props.children}</p>
      <div class="row">
        <code class="secret" data-testid={props.testId}>
          {props.secret}
        </code>
        <CopyButton text={props.secret} label="Copy key" />
      </div>
      {snippet && (
        <>
          <p class="small muted">For Claude Code, in your shell{props.passthrough ? " (it keeps its own login)" : ""}:</p>
          <pre class="snippet">{snippet}</pre>
          <div class="row">
            <CopyButton text={snippet} label="Copy snippet" />
          </div>
        </>
      )}
      <div>
        <button type="button" class="secondary" onClick={props.onDone}>
          Done
        </button>
      </div>
    </div>
  );
}

function CopyButton(props: { text: string; label: string }) {
  const [state, setState] = useState<"" | "Copied" | "Copy failed: select the text and copy it">("");
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(props.text);
      setState("Copied");
    } catch {
      setState("Copy failed: select the text and copy it");
    }
  };
  return (
    <>
      <button type="button" class="secondary" onClick={() => void copy()}>
        {props.label}
      </button>
      {state && (
        <span class="muted small" role="status">
          {state}
        </span>
      )}
    </>
  );
}

function ClientKeys(props: {
  keys: ClientKeyInfo[] | null;
  baseUrl: string | null;
  accounts: AccountInfo[];
  reload: () => Promise<void>;
  onError: (e: unknown) => void;
}) {
  const [name, setName] = useState("");
  const [account, setAccount] = useState("");
  const [days, setDays] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [created, setCreated] = useState<CreatedClientKey | null>(null);
  const [confirm, setConfirm] = useState<{ id: string; action: "rotate" | "revoke" } | null>(null);
  const cancel = useRef<HTMLButtonElement>(null);

  // Keyboard users land on the safe choice of a confirmation.
  useLayoutEffect(() => {
    if (confirm) cancel.current?.focus();
  }, [confirm]);

  const run = async (work: () => Promise<void>) => {
    setBusy(true);
    setError("");
    try {
      await work();
    } catch (e) {
      props.onError(e);
      setError(message(e));
    } finally {
      setBusy(false);
    }
  };

  const create = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      const made = await api.createKey({
        name,
        ...(account ? { account } : {}),
        ...(days.trim() ? { expires_days: Number(days) } : {}),
      });
      setCreated(made);
      setName("");
      setDays("");
      await props.reload();
    });
  };

  const act = (id: string, action: "rotate" | "revoke") =>
    void run(async () => {
      setConfirm(null);
      if (action === "rotate") setCreated(await api.rotateKey(id));
      else {
        await api.revokeKey(id);
        setCreated((shown) => (shown?.id === id ? null : shown));
      }
      await props.reload();
    });

  const base = created?.base_url ?? props.baseUrl;
  const rows = props.keys && keyRows(props.keys, props.accounts);
  const fromFiles = rows?.some((k) => k.source === "file") ?? false;
  const passthrough = props.accounts.find((a) => a.domain === created?.account)?.type === "passthrough";
  return (
    <section class="card" id="client-keys" aria-labelledby="keys-title">
      <h2 id="keys-title">Client keys</h2>
      <form class="filters" aria-label="Create a client key" onSubmit={create}>
        <label>
          Name
          <input value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} placeholder="laptop" required />
        </label>
        <label>
          Account
          <select value={account} onChange={(e) => setAccount((e.target as HTMLSelectElement).value)}>
            <option value="">default</option>
            {props.accounts.map((a) => (
              <option value={a.domain}>{a.domain}</option>
            ))}
          </select>
        </label>
        <label>
          Expires after (days)
          <input value={days} onInput={(e) => setDays((e.target as HTMLInputElement).value)} inputMode="numeric" placeholder="never" size={6} />
        </label>
        <button type="submit" disabled={busy}>
          Create key
        </button>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {created && (
        <ShownKey
          label="New client key"
          testId="new-key"
          secret={created.key}
          baseUrl={base}
          passthrough={passthrough}
          onDone={() => setCreated(null)}
        >
          <strong>New key for {created.name ?? created.id}</strong> ({created.account}). Copy it now: it is not shown again.
        </ShownKey>
      )}
      {!rows ? (
        <p class="loading">Loading…</p>
      ) : rows.length === 0 ? (
        <p class="muted">No client keys yet.</p>
      ) : (
        <>
          <div class="table-wrap">
            <table aria-label="Client keys">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Key</th>
                  <th scope="col">Account</th>
                  <th scope="col">Created</th>
                  <th scope="col">Expires</th>
                  <th scope="col">Last used</th>
                  <th scope="col">Status</th>
                  <th scope="col" aria-label="Actions" />
                </tr>
              </thead>
              <tbody>
                {rows.map((k) =>
                  k.source === "file" ? (
                    <FileKeyRow id={k.id} prefix={k.prefix} account={k.account} />
                  ) : (
                    <tr data-key={k.id}>
                      <td>{k.name ?? "–"}</td>
                      <td>
                        <code>{k.prefix}</code>
                      </td>
                      <td>{k.account}</td>
                      <td title={formatTime(k.created_at)}>{formatRelative(k.created_at)}</td>
                      <td>{k.expires_at ? formatTime(k.expires_at) : "never"}</td>
                      <td>{k.last_used_at ? formatRelative(k.last_used_at) : "never"}</td>
                      <td>
                        <span class={`badge ${k.status === "active" ? "ok" : "server"}`}>{k.status}</span>
                      </td>
                      <td>
                        {k.status !== "revoked" &&
                          (confirm?.id === k.id ? (
                            <span key="confirm" class="row" role="group" aria-label={`Confirm ${confirm.action}`}>
                              <span class="small">
                                {confirm.action === "revoke" ? "Clients using it get 401." : "A new key for the same account; this one keeps working until you revoke it."}
                              </span>
                              <button type="button" disabled={busy} onClick={() => act(k.id, confirm.action)}>
                                {confirm.action === "revoke" ? "Yes, revoke" : "Yes, rotate"}
                              </button>
                              <button type="button" class="secondary" ref={cancel} onClick={() => setConfirm(null)}>
                                Cancel
                              </button>
                            </span>
                          ) : (
                            <span key="actions" class="row">
                              <button type="button" class="secondary" onClick={() => setConfirm({ id: k.id, action: "rotate" })}>
                                Rotate
                              </button>
                              <button type="button" class="secondary" onClick={() => setConfirm({ id: k.id, action: "revoke" })}>
                                Revoke
                              </button>
                            </span>
                          ))}
                      </td>
                    </tr>
                  ),
                )}
              </tbody>
            </table>
          </div>
          {fromFiles && (
            <p class="small muted" id="file-keys-note">
              A key <em>from the credential file</em> is the file's own <code>client_api_key</code>: it cannot be rotated or revoked
              here. To change it, edit <code>&lt;domain&gt;.credentials.json</code> in the credentials directory (the proxy reloads it
              by itself). To manage it here, run <code>claude-nexus credentials import</code>: it moves the key into this list (the
              same key keeps working) and the file's other secrets into the OS keychain.
            </p>
          )}
        </>
      )}
    </section>
  );
}

/** A credential file's own client_api_key: shown by its prefix, managed in the file. */
function FileKeyRow(props: { id: string; prefix: string; account: string }) {
  return (
    <tr data-key={props.id} data-source="file">
      <td>
        <span class="tag from-file">from the credential file</span>
      </td>
      <td>
        <code>{props.prefix}</code>
      </td>
      <td>{props.account}</td>
      <td>–</td>
      <td>never</td>
      <td>–</td>
      <td>
        <span class="badge ok">active</span>
      </td>
      <td class="small muted" aria-describedby="file-keys-note">
        Not managed here
      </td>
    </tr>
  );
}
