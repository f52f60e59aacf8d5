// The filter form of the Requests and Conversations pages: each page names the fields it
// offers; what is typed is a draft until Apply (or Enter), so a list is not fetched per key.
import { useEffect, useState } from "preact/hooks";
import { api } from "./api";
import { emptyFilter, type Filter, type KeyRow, keyLabel, keyRows } from "./format";

/** The client keys to filter by, as the Accounts page lists them. */
async function loadKeys(): Promise<KeyRow[]> {
  const [{ keys }, { accounts }] = await Promise.all([api.keys(), api.accounts()]);
  return keyRows(keys, accounts);
}

export function FilterForm(props: { label: string; fields: (keyof Filter)[]; onApply: (filter: Filter) => void }) {
  const [draft, setDraft] = useState<Filter>(emptyFilter);
  const [keys, setKeys] = useState<KeyRow[]>([]);
  const offersKeys = props.fields.includes("client_key_id");
  useEffect(() => {
    if (offersKeys) loadKeys().then(setKeys, () => setKeys([]));
  }, [offersKeys]);
  const set = (name: keyof Filter) => (e: Event) => setDraft({ ...draft, [name]: (e.target as HTMLInputElement).value });
  const text = (name: keyof Filter, label: string) => (
    <label key={name}>
      {label}
      <input value={draft[name]} onInput={set(name)} placeholder="any" />
    </label>
  );
  const field = (name: keyof Filter) => {
    switch (name) {
      case "domain":
        return text(name, "Domain");
      case "account_id":
        return text(name, "Account");
      case "model":
        return text(name, "Model");
      case "status":
        return (
          <label key={name}>
            Status
            <input value={draft.status} onInput={set("status")} placeholder="any" inputMode="numeric" size={4} />
          </label>
        );
      case "streaming":
        return (
          <label key={name}>
            Streaming
            <select value={draft.streaming} onChange={set("streaming")}>
              <option value="">any</option>
              <option value="true">yes</option>
              <option value="false">no</option>
            </select>
          </label>
        );
      case "client_key_id":
        return (
          <label key={name}>
            Client key
            <select value={draft.client_key_id} onChange={set("client_key_id")}>
              <option value="">any</option>
              {keys.map((k) => (
                <option key={k.id} value={k.id}>
                  {keyLabel(k)}
                </option>
              ))}
            </select>
          </label>
        );
      case "since":
      case "until":
        return (
          <label key={name}>
            {name === "since" ? "From" : "To"}
            <input type="datetime-local" value={draft[name]} onInput={set(name)} />
          </label>
        );
    }
  };

  return (
    <form
      class="filters card"
      aria-label={props.label}
      onSubmit={(e) => {
        e.preventDefault();
        props.onApply(draft);
      }}
    >
      {props.fields.map(field)}
      <div class="filter-actions">
        <button type="submit">Apply</button>
        <button
          type="button"
          class="secondary"
          onClick={() => {
            setDraft(emptyFilter);
            props.onApply(emptyFilter);
          }}
        >
          Clear
        </button>
      </div>
    </form>
  );
}
