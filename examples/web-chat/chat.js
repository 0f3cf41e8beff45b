// The browser side of the web chat: plain JavaScript, no framework, no build step.
//
// One WebSocket to the host and port the page came from, path /chat. Every line is one text frame, without
// a newline, both ways. The first line sent on every connection is the nick; the server (examples/chat.ts)
// answers "* you are <nick>", or "... cannot be your nick ..." when it is taken, and the page goes back to
// the nick form. After that, each line typed is sent as is. What the server sends is shown as is: messages of
// others ("bob: hi") and announcements ("* bob joined"). The server does not echo our own lines, so the page
// shows them itself.
//
// When the connection drops the page says so and reconnects after 1 s, 2 s, 4 s ... (at most 30 s, each
// delay with random jitter so that a restarted server is not hit by every page at once), and sends the nick
// again. The delays start over once a connection has stayed up for 5 s.
'use strict';

(() => {
  const BASE_DELAY_MS = 1000;
  const MAX_DELAY_MS = 30_000;
  const STABLE_MS = 5000;
  const MAX_LINES = 500;

  const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/chat`;

  const $ = (id) => document.getElementById(id);
  const state = $('state');
  const stateText = $('state-text');
  const countdown = $('countdown');
  const joinForm = $('join');
  const nickInput = $('nick');
  const nickHelp = $('nick-help');
  const room = $('room');
  const log = $('log');
  const sayForm = $('say');
  const messageInput = $('message');
  const sendButton = $('send');
  const reconnectButton = $('reconnect');
  const leaveButton = $('leave');
  const nickHelpText = nickHelp.textContent;

  /** The nick of this session, or null before joining / after leaving. */
  let nick = null;
  let socket = null;
  /** Consecutive failed or short-lived connections: the exponent of the next delay. */
  let attempt = 0;
  let openedAt = 0;
  let retryTimer = null;
  let countdownTimer = null;

  function showState(kind, text, detail = '') {
    state.dataset.state = kind;
    stateText.textContent = text;
    countdown.textContent = detail;
  }

  /** Adds a line to the log, keeping the view at the bottom if it was there. */
  function addLine(text, kind) {
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 8;
    const item = document.createElement('li');
    item.textContent = text;
    if (kind) item.className = kind;
    log.append(item);
    while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function stopTimers() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    retryTimer = null;
    countdownTimer = null;
    reconnectButton.hidden = true;
  }

  function connect() {
    stopTimers();
    showState('connecting', 'Connecting…');
    const ws = new WebSocket(url);
    socket = ws;
    ws.addEventListener('open', () => {
      if (socket !== ws) return;
      openedAt = Date.now();
      ws.send(nick);
      showState('connecting', `Joining as ${nick}…`);
    });
    ws.addEventListener('message', (event) => {
      if (socket !== ws || typeof event.data !== 'string') return;
      const line = event.data;
      if (line === `* you are ${nick}`) {
        showState('connected', `Connected as ${nick}.`);
        sendButton.disabled = false;
      } else if (line.startsWith('* ') && line.includes('cannot be your nick')) {
        const taken = nick;
        leave();
        nickHelp.textContent = `The nick ${taken} is taken or not allowed; choose another one.`;
        nickInput.setAttribute('aria-invalid', 'true');
        return;
      }
      addLine(line, line.startsWith('* ') ? 'notice' : '');
    });
    // 'error' carries no detail in browsers and is always followed by 'close'.
    ws.addEventListener('close', () => {
      if (socket !== ws) return;
      socket = null;
      sendButton.disabled = true;
      if (nick !== null) scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (openedAt !== 0 && Date.now() - openedAt >= STABLE_MS) attempt = 0;
    openedAt = 0;
    const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt);
    attempt += 1;
    // Half the delay fixed, half random: retries spread out, and never come sooner than half the delay.
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    const due = Date.now() + delay;
    const tick = () => {
      const seconds = Math.max(1, Math.ceil((due - Date.now()) / 1000));
      showState('disconnected', 'Disconnected, reconnecting', `in ${seconds} s`);
    };
    stopTimers();
    tick();
    countdownTimer = setInterval(tick, 250);
    retryTimer = setTimeout(connect, delay);
    reconnectButton.hidden = false;
  }

  function leave() {
    nick = null;
    stopTimers();
    if (socket !== null) socket.close(1000, 'left');
    socket = null;
    sendButton.disabled = true;
    room.hidden = true;
    joinForm.hidden = false;
    showState('idle', 'Not connected.');
    nickInput.focus();
  }

  joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const wanted = nickInput.value.trim();
    if (!/^\S{1,32}$/.test(wanted)) {
      nickInput.setAttribute('aria-invalid', 'true');
      nickHelp.textContent = 'A nick is one word of 1 to 32 characters, no spaces.';
      nickInput.focus();
      return;
    }
    nickInput.removeAttribute('aria-invalid');
    nickHelp.textContent = nickHelpText;
    nick = wanted;
    attempt = 0;
    joinForm.hidden = true;
    room.hidden = false;
    messageInput.focus();
    connect();
  });

  sayForm.addEventListener('submit', (event) => {
    event.preventDefault();
    // One line per frame: a pasted newline would make two lines on the TCP side.
    const text = messageInput.value.replace(/\r?\n/g, ' ');
    if (text.trim() === '' || sendButton.disabled || socket === null || socket.readyState !== WebSocket.OPEN) return;
    socket.send(text);
    addLine(`${nick}: ${text}`, 'own');
    messageInput.value = '';
    messageInput.focus();
  });

  reconnectButton.addEventListener('click', () => {
    if (nick !== null && socket === null) connect();
  });
  leaveButton.addEventListener('click', leave);
  // Back online: no need to wait for the timer.
  window.addEventListener('online', () => {
    if (nick !== null && socket === null) connect();
  });
})();
