// What came of an action the user took: a status line when it worked, an alert when not.
export type Outcome = { ok: boolean; text: string };

export function OutcomeLine(props: { outcome: Outcome | null; inline?: boolean }) {
  const outcome = props.outcome;
  if (!outcome) return null;
  const Tag = props.inline ? "span" : "p";
  return (
    <Tag class={outcome.ok ? "ok-text" : "error"} role={outcome.ok ? "status" : "alert"}>
      {outcome.text}
    </Tag>
  );
}
