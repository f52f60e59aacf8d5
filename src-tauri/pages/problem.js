// The app's own page, shown when the proxy is not running: says why, and offers a free port
// when its port is taken. The app points the window at the dashboard once the proxy runs.
const invoke = window.__TAURI__.core.invoke;

async function show() {
  const problem = await invoke("desktop_problem");
  document.getElementById("message").textContent = problem.message;
  const offer = document.getElementById("offer");
  offer.hidden = problem.free == null;
  if (problem.free != null) {
    const button = document.getElementById("use-port");
    button.textContent = `Use port ${problem.free} instead`;
    button.onclick = async () => {
      button.disabled = true;
      try {
        document.getElementById("result").textContent = await invoke("use_port", { port: problem.free });
      } catch (e) {
        document.getElementById("result").textContent = String(e);
        button.disabled = false;
      }
    };
  }
}

show();
