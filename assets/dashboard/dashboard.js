// SPDX-License-Identifier: MIT
// The mock backend's fleet dashboard. It reads the admin API every second and acts through
// it, with the API key the user types (kept in this page's memory only). Everything shown
// is written as text (textContent, Text nodes), never parsed as markup: an agent can
// report any string, and a string is all it gets to be here.
'use strict';

(function () {
  const POLL_MS = 1000;
  const MAX_ROWS = 200;

  let apiKey = '';
  let pollTimer = 0;
  let polling = false;
  let pollAgain = false;
  let signedIn = false;
  let clockOffsetMs = 0; // the backend's clock minus this one, from the Date header
  let activePolicyHash = '';
  const cards = new Map(); // installation id -> the card's elements

  const $ = (selector) => document.querySelector(selector);

  // An element with a class and a text (never markup).
  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // -- the admin API ----------------------------------------------------------------------

  async function api(method, path, body) {
    const init = { method: method, headers: { 'X-API-Key': apiKey }, cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const text = await res.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (e) {
        data = null;
      }
    }
    return { status: res.status, ok: res.ok, data: data, date: res.headers.get('Date') };
  }

  function errorText(r) {
    if (r.data && r.data.error) return r.data.error.message + ' (' + r.data.error.code + ', HTTP ' + r.status + ')';
    return 'HTTP ' + r.status;
  }

  function say(kind, text) {
    const s = $('#status');
    s.dataset.kind = kind;
    s.textContent = text;
  }

  function setConnection(state, text) {
    const c = $('#connection');
    c.dataset.state = state;
    c.textContent = text;
  }

  // -- time ---------------------------------------------------------------------------------

  // The Date header has whole seconds: keep the offset unless it moved by more than one.
  function noteServerDate(header) {
    const at = Date.parse(header || '');
    if (isNaN(at)) return;
    const offset = at + 500 - Date.now();
    if (Math.abs(offset - clockOffsetMs) > 1000) clockOffsetMs = offset;
  }

  function serverNow() {
    return Date.now() + clockOffsetMs;
  }

  function span(seconds) {
    let s = Math.abs(Math.round(seconds));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }

  function ago(iso) {
    if (!iso) return 'never';
    const s = (serverNow() - Date.parse(iso)) / 1000;
    return s < 1 ? 'just now' : span(s) + ' ago';
  }

  function until(iso) {
    const s = (Date.parse(iso) - serverNow()) / 1000;
    return s >= 0 ? 'in ' + span(s) : span(s) + ' ago';
  }

  function millis(ms) {
    if (ms < 1000) return Math.round(ms) + ' ms';
    return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
  }

  function clip(text, n) {
    return text.length > n ? text.slice(0, n - 1) + '\u2026' : text;
  }

  function shortHash(h) {
    return h ? h.slice(0, 12) : '';
  }

  // -- installations ------------------------------------------------------------------------

  const FACTS = [
    ['Installation', 'id'], ['Reported', 'reported'], ['Worker', 'worker'], ['Platform', 'platform'],
    ['Capabilities', 'capabilities'], ['Last heartbeat', 'last-heartbeat'], ['Heartbeats', 'heartbeats'],
    ['Lease', 'lease'], ['Metrics', 'metrics'], ['Policy', 'policy'], ['Runtime token', 'token'],
    ['SDK', 'sdk'], ['Task streams', 'streams'], ['Revoked', 'revoked'],
  ];
  const ACTIONS = [['pause', 'Pause'], ['resume', 'Resume'], ['terminate', 'Terminate'], ['revoke', 'Revoke']];

  function makeCard(id) {
    const c = { root: el('article', 'card'), facts: {}, labels: {} };
    c.root.dataset.installation = id;
    const head = el('header', 'card-head');
    c.agent = el('h3', 'agent');
    c.state = el('span', 'state');
    head.append(c.agent, c.state);
    const dl = el('dl', 'facts');
    for (const [label, key] of FACTS) {
      const dt = el('dt', null, label);
      const dd = el('dd', key);
      dl.append(dt, dd);
      c.facts[key] = dd;
      c.labels[key] = dt;
    }
    c.timeline = el('div', 'timeline');
    c.timeline.setAttribute('role', 'img');
    const actions = el('div', 'actions');
    const label = el('label', null, 'Shutdown timeout (ms), for terminate and revoke');
    c.timeout = el('input', 'timeout');
    c.timeout.type = 'number';
    c.timeout.min = '0';
    c.timeout.step = '1';
    c.timeout.value = '5000';
    label.append(c.timeout);
    actions.append(label);
    c.buttons = [];
    for (const [action, text] of ACTIONS) {
      const b = el('button', action === 'revoke' ? 'danger' : 'secondary', text);
      b.type = 'button';
      b.dataset.action = action;
      b.addEventListener('click', () => act(id, action, c));
      actions.append(b);
      c.buttons.push(b);
    }
    c.root.append(head, dl, el('h4', null, 'Heartbeat timeline'), c.timeline, actions);
    return c;
  }

  function platformText(p) {
    if (!p || typeof p !== 'object') return 'unknown';
    const parts = [String(p.type || 'unknown')];
    for (const key of Object.keys(p)) {
      if (key === 'type') continue;
      const v = p[key];
      parts.push(key + '=' + (typeof v === 'string' ? v : JSON.stringify(v)));
    }
    return parts.join(' \u00b7 ');
  }

  function policyText(i) {
    if (!i.worker || !i.worker.policy_hash) return 'not reported yet (active ' + shortHash(activePolicyHash) + ')';
    const h = i.worker.policy_hash;
    return shortHash(h) + (h === activePolicyHash ? ' (active)' : ' (stale: active is ' + shortHash(activePolicyHash) + ')');
  }

  function drawTimeline(box, marks) {
    const nodes = [];
    const times = marks.map((m) => Date.parse(m.at));
    const gaps = [];
    for (let k = 1; k < times.length; ++k) gaps.push(times[k] - times[k - 1]);
    const sorted = gaps.slice().sort((a, b) => a - b);
    const median = sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
    marks.forEach((m, k) => {
      if (k > 0 && median > 0 && gaps[k - 1] > 2.5 * median && gaps[k - 1] > 2000) {
        const gap = el('span', 'gap');
        gap.title = 'no heartbeat for ' + span(gaps[k - 1] / 1000);
        nodes.push(gap);
      }
      const beat = el('span', 'beat');
      beat.dataset.status = String(m.status);
      beat.title = m.at + ': ' + m.status;
      nodes.push(beat);
    });
    box.replaceChildren(...nodes);
    box.setAttribute('aria-label', marks.length
      ? marks.length + ' recent heartbeats, the last ' + ago(marks[marks.length - 1].at)
      : 'no heartbeat yet');
  }

  function updateCard(c, i) {
    const f = c.facts;
    c.agent.textContent = i.agent_id || '(no agent id)';
    c.state.textContent = i.state;
    c.state.dataset.state = i.state;
    f.id.textContent = i.installation_id;
    f.reported.textContent = i.last_status ? i.last_status + ' (heartbeat #' + i.sequence + ', up ' + span(i.uptime_seconds) + ')'
      : 'no heartbeat yet';
    const w = i.worker;
    f.worker.textContent = w ? w.state + ': ' + w.in_flight + ' in flight, ' + w.completed + ' completed, ' + w.failed +
      ' failed (reported ' + ago(w.last_heartbeat_at) + ')' : 'no worker heartbeat yet';
    f.platform.textContent = platformText(i.platform);
    f.capabilities.textContent = (i.capabilities || []).join(', ') || 'none';
    f['last-heartbeat'].textContent = i.last_heartbeat_at ? ago(i.last_heartbeat_at) : 'never';
    f['last-heartbeat'].title = i.last_heartbeat_at || '';
    f.heartbeats.textContent = String(i.heartbeats);
    f.lease.textContent = i.state === 'revoked' ? 'none (revoked)' : 'expires ' + until(i.lease_expires_at);
    const m = i.metrics || {};
    f.metrics.textContent = m.requests_handled + ' requests, ' + m.errors + ' errors, ' + m.avg_latency_ms + ' ms average';
    f.policy.textContent = policyText(i);
    f.token.textContent = 'version ' + i.token_version + ', expires ' + until(i.runtime_token_expires_at);
    f.sdk.textContent = i.sdk ? i.sdk.name + ' ' + i.sdk.version : 'unknown';
    f.streams.textContent = i.open_streams + ' open, ' + i.pending_commands + ' command(s) pending';
    const revoked = !!i.revoked;
    f.revoked.hidden = c.labels.revoked.hidden = !revoked;
    f.revoked.textContent = revoked ? i.revoked.reason + ' (shutdown timeout ' + i.revoked.shutdown_timeout_ms + ' ms)' : '';
    drawTimeline(c.timeline, i.recent_heartbeats || []);
    for (const b of c.buttons) b.disabled = revoked;
    c.timeout.disabled = revoked;
  }

  function renderInstallations(list) {
    const box = $('#installations');
    const seen = new Set();
    for (const i of list) {
      seen.add(i.installation_id);
      let c = cards.get(i.installation_id);
      if (!c) {
        c = makeCard(i.installation_id);
        cards.set(i.installation_id, c);
        box.append(c.root);
      }
      updateCard(c, i);
    }
    for (const [id, c] of cards) {
      if (!seen.has(id)) {
        c.root.remove();
        cards.delete(id);
      }
    }
    $('#no-installations').hidden = list.length > 0;
    $('#installation-count').textContent = '(' + list.length + ')';
    const caps = new Set();
    for (const i of list) for (const cap of i.capabilities || []) caps.add(cap);
    $('#capability-list').replaceChildren(...[...caps].sort().map((cap) => {
      const o = el('option');
      o.value = cap;
      return o;
    }));
  }

  async function act(id, action, c) {
    const raw = c.timeout.value.trim();
    const timeout = raw === '' ? undefined : Number(raw);
    if (timeout !== undefined && !(Number.isInteger(timeout) && timeout >= 0)) {
      say('error', 'The shutdown timeout must be a whole number of milliseconds, 0 or more.');
      return;
    }
    const path = encodeURIComponent(id);
    let r;
    try {
      if (action === 'revoke') {
        r = await api('POST', '/api/v1/installations/' + path + '/revoke',
          { reason: 'revoked from the dashboard', shutdown_timeout_ms: timeout });
      } else {
        const body = { type: action, reason: 'sent from the dashboard' };
        if (action === 'terminate') body.shutdown_timeout_ms = timeout;
        r = await api('POST', '/admin/v1/installations/' + path + '/commands', body);
      }
    } catch (e) {
      say('error', action + ': the backend is unreachable');
      return;
    }
    if (r.status === 401) return signOut('The API key was refused.');
    if (!r.ok) {
      say('error', action + ' ' + id + ': ' + errorText(r));
    } else if (action === 'revoke') {
      say('ok', id + ' revoked');
    } else {
      say('ok', action + ' sent to ' + id + ' (' + r.data.command_id + ')');
    }
    refresh();
  }

  // -- tasks, commands, faults, policy ------------------------------------------------------

  function cell(text, className) {
    return el('td', className, text);
  }

  function renderTasks(list) {
    const rows = [];
    for (const t of list.slice(-MAX_ROWS).reverse()) {
      const tr = el('tr');
      tr.dataset.task = t.task_id;
      const status = el('span', 'badge', t.status);
      status.dataset.status = t.status;
      const statusCell = el('td', 'status');
      statusCell.append(status);
      let latency = '';
      if (t.completed_at) {
        latency = millis(Date.parse(t.completed_at) - Date.parse(t.created_at)) + ' (handler ' + t.execution_time_ms + ' ms)';
      } else {
        latency = 'waiting ' + span((serverNow() - Date.parse(t.created_at)) / 1000);
      }
      let output = '';
      if (t.error) output = t.error.code + ': ' + t.error.message;
      else if (t.output !== null && t.output !== undefined) output = JSON.stringify(t.output);
      const out = cell(clip(output, 300), 'output');
      out.title = output;
      tr.append(cell(t.task_id, 'id'), cell(t.capability), statusCell, cell(String(t.delivery_count), 'deliveries'),
        cell(latency, 'latency'), cell(t.installation_id || '', 'id'), out);
      rows.push(tr);
    }
    $('#tasks tbody').replaceChildren(...rows);
    $('#no-tasks').hidden = list.length > 0;
    $('#task-count').textContent = '(' + list.length + ')';
  }

  function renderCommands(list) {
    const rows = [];
    for (const c of list.slice(-MAX_ROWS).reverse()) {
      const tr = el('tr');
      tr.dataset.command = c.command_id;
      const delivered = c.delivered_at ? 'by ' + c.delivered_via.replace('_', ' ') + ', ' + ago(c.delivered_at) : 'pending';
      tr.append(cell(c.command_id, 'id'), cell(c.installation_id, 'id'), cell(c.type, 'type'), cell(c.reason),
        cell(c.shutdown_timeout_ms === null ? '' : c.shutdown_timeout_ms + ' ms'), cell(ago(c.created_at)),
        cell(delivered, 'delivered'));
      rows.push(tr);
    }
    $('#commands tbody').replaceChildren(...rows);
    $('#no-commands').hidden = list.length > 0;
    $('#command-count').textContent = '(' + list.length + ')';
  }

  function renderFaults(list) {
    const items = list.map((f) => {
      let effect = '';
      if (f.status !== null) effect = 'answer ' + f.status + (f.retry_after ? ' (Retry-After ' + f.retry_after + ')' : '');
      else if (f.drop_connection) effect = 'drop the connection';
      else if (f.cut_stream_after_events !== null) effect = 'cut streams after ' + f.cut_stream_after_events + ' event(s)';
      if (f.delay_ms > 0) effect = effect ? effect + ', after ' + f.delay_ms + ' ms' : 'delay ' + f.delay_ms + ' ms';
      return el('li', null, '#' + f.fault_id + ' ' + (f.path_prefix || '(every path)') + ': ' + effect + ', ' +
        f.remaining + ' request(s) left');
    });
    if (!items.length) items.push(el('li', 'muted', 'none'));
    $('#faults').replaceChildren(...items);
  }

  function renderPolicy(p) {
    activePolicyHash = p.hash;
    $('#policy-summary').textContent = 'version ' + p.version + ', hash ' + p.hash;
    $('#policy-content').textContent = JSON.stringify(p.content, null, 2);
  }

  function renderSummary(installations, tasks) {
    const by = {};
    for (const i of installations) by[i.state] = (by[i.state] || 0) + 1;
    const states = Object.keys(by).sort().map((k) => by[k] + ' ' + k).join(', ');
    const open = tasks.filter((t) => t.status === 'queued' || t.status === 'delivered').length;
    const clock = new Date(serverNow()).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
    $('#summary').textContent = installations.length + ' installation(s)' + (states ? ' (' + states + ')' : '') + ', ' +
      tasks.length + ' task(s), ' + open + ' open; backend time ' + clock;
  }

  // -- polling ------------------------------------------------------------------------------

  async function poll() {
    if (!signedIn) return;
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    clearTimeout(pollTimer);
    try {
      const rs = await Promise.all([
        api('GET', '/admin/v1/installations'), api('GET', '/admin/v1/tasks'), api('GET', '/admin/v1/commands'),
        api('GET', '/admin/v1/faults'), api('GET', '/admin/v1/policy'),
      ]);
      if (!signedIn) return;
      if (rs.some((r) => r.status === 401)) {
        signOut('The API key was refused.');
        return;
      }
      const failed = rs.find((r) => !r.ok);
      if (failed) {
        setConnection('error', errorText(failed));
      } else {
        noteServerDate(rs[0].date);
        renderPolicy(rs[4].data);
        renderInstallations(rs[0].data.installations);
        renderTasks(rs[1].data.tasks);
        renderCommands(rs[2].data.commands);
        renderFaults(rs[3].data.faults);
        renderSummary(rs[0].data.installations, rs[1].data.tasks);
        setConnection('live', 'live');
      }
    } catch (e) {
      setConnection('unreachable', 'backend unreachable');
    } finally {
      polling = false;
      if (signedIn) pollTimer = setTimeout(poll, pollAgain ? 0 : POLL_MS);
      pollAgain = false;
    }
  }

  function refresh() {
    clearTimeout(pollTimer);
    poll();
  }

  function signOut(message) {
    signedIn = false;
    apiKey = '';
    clearTimeout(pollTimer);
    for (const c of cards.values()) c.root.remove();
    cards.clear();
    $('#app').hidden = true;
    $('#sign-out').hidden = true;
    $('#login').hidden = false;
    $('#key-error').textContent = message || '';
    setConnection('signed-out', 'signed out');
    $('#api-key').focus();
  }

  // -- forms --------------------------------------------------------------------------------

  async function submitted(form, run) {
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      await run();
    } catch (e) {
      say('error', 'The backend is unreachable.');
    } finally {
      button.disabled = false;
    }
  }

  function wire() {
    $('#key-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      submitted(ev.target, async () => {
        apiKey = $('#api-key').value.trim();
        const r = await api('GET', '/admin/v1/policy');
        if (!r.ok) {
          apiKey = '';
          $('#key-error').textContent = r.status === 401 ? 'The API key was refused.' : errorText(r);
          return;
        }
        $('#api-key').value = '';
        $('#key-error').textContent = '';
        signedIn = true;
        $('#login').hidden = true;
        $('#app').hidden = false;
        $('#sign-out').hidden = false;
        say('ok', 'Connected.');
        refresh();
      });
    });

    $('#sign-out').addEventListener('click', () => signOut(''));

    $('#task-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const form = ev.target;
      submitted(form, async () => {
        const capability = form.capability.value.trim();
        let input;
        try {
          input = JSON.parse(form.input.value.trim() || '{}');
        } catch (e) {
          say('error', 'The input is not valid JSON: ' + e.message);
          return;
        }
        const r = await api('POST', '/admin/v1/tasks', { capability: capability, input: input });
        if (r.status === 401) return signOut('The API key was refused.');
        if (!r.ok) return say('error', 'Enqueue: ' + errorText(r));
        say('ok', 'Task ' + r.data.task_id + ' queued for ' + capability + '.');
        refresh();
      });
    });

    $('#token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const form = ev.target;
      submitted(form, async () => {
        const body = {};
        if (form.agent_id.value.trim()) body.agent_id = form.agent_id.value.trim();
        if (form.ttl_seconds.value.trim()) body.ttl_seconds = Number(form.ttl_seconds.value);
        const r = await api('POST', '/admin/v1/install-tokens', body);
        if (r.status === 401) return signOut('The API key was refused.');
        if (!r.ok) return say('error', 'Mint: ' + errorText(r));
        $('#minted-token').textContent = r.data.install_token + (r.data.expires_at ? ' (expires ' + r.data.expires_at + ')' : '');
        say('ok', 'Install token minted' + (body.agent_id ? ' for ' + body.agent_id : '') + '.');
      });
    });

    $('#fault-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const form = ev.target;
      submitted(form, async () => {
        const fault = { path_prefix: form.path_prefix.value.trim(), count: Number(form.count.value || 1) };
        const effect = form.effect.value;
        if (effect === 'status') {
          fault.status = Number(form.status.value);
          if (form.retry_after.value.trim()) fault.retry_after = form.retry_after.value.trim();
        } else if (effect === 'drop') {
          fault.drop_connection = true;
        } else if (effect === 'cut') {
          fault.cut_stream_after_events = Number(form.cut.value || 0);
        }
        const delay = Number(form.delay_ms.value || 0);
        if (delay > 0) fault.delay_ms = delay;
        const r = await api('POST', '/admin/v1/faults', fault);
        if (r.status === 401) return signOut('The API key was refused.');
        if (!r.ok) return say('error', 'Fault: ' + errorText(r));
        say('ok', 'Fault #' + r.data.fault_id + ' injected.');
        refresh();
      });
    });

    $('#clear-faults').addEventListener('click', async () => {
      try {
        const r = await api('DELETE', '/admin/v1/faults');
        if (r.status === 401) return signOut('The API key was refused.');
        if (!r.ok) return say('error', 'Clear: ' + errorText(r));
        say('ok', r.data.cleared + ' fault(s) cleared.');
        refresh();
      } catch (e) {
        say('error', 'The backend is unreachable.');
      }
    });

    $('#api-key').focus();
  }

  wire();
})();
