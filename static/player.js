// Replays an asciicast v2 recording (/sessions/ID/cast) in a <pre>: a small terminal that
// keeps the screen as lines, moves the cursor for \r, \n and backspace, understands the
// escape sequences shells use most (clear screen, erase line, cursor position and moves) and
// drops the rest. Play, pause, speed and seek; seeking replays from the start up to the point.
(function () {
  'use strict';
  var el = document.getElementById('player');
  if (!el) { return; }
  var screen = el.querySelector('.screen');
  var playButton = el.querySelector('[data-play]');
  var speedSelect = el.querySelector('[data-speed]');
  var seek = el.querySelector('[data-seek]');
  var clock = el.querySelector('[data-clock]');
  var events = [];
  var duration = 0;
  var rows = 24;
  var term, next, position, playing, last;

  function reset() {
    term = { lines: [''], row: 0, col: 0 };
    next = 0;
  }

  function put(ch) {
    var line = term.lines[term.row] || '';
    while (line.length < term.col) { line += ' '; }
    term.lines[term.row] = line.slice(0, term.col) + ch + line.slice(term.col + 1);
    term.col += 1;
  }

  function newline() {
    term.row += 1;
    while (term.lines.length <= term.row) { term.lines.push(''); }
  }

  function csi(params, final) {
    var n = params.split(';').map(function (p) { return parseInt(p, 10) || 0; });
    var top = Math.max(0, term.lines.length - rows);
    switch (final) {
      case 'J':
        if (n[0] === 2 || n[0] === 3) { term.lines = ['']; term.row = 0; term.col = 0; }
        else { term.lines[term.row] = (term.lines[term.row] || '').slice(0, term.col); term.lines.length = term.row + 1; }
        break;
      case 'K': term.lines[term.row] = (term.lines[term.row] || '').slice(0, term.col); break;
      case 'H': case 'f':
        term.row = top + Math.max(0, (n[0] || 1) - 1);
        term.col = Math.max(0, (n[1] || 1) - 1);
        while (term.lines.length <= term.row) { term.lines.push(''); }
        break;
      case 'A': term.row = Math.max(top, term.row - (n[0] || 1)); break;
      case 'B': term.row += n[0] || 1; while (term.lines.length <= term.row) { term.lines.push(''); } break;
      case 'C': term.col += n[0] || 1; break;
      case 'D': term.col = Math.max(0, term.col - (n[0] || 1)); break;
      case 'G': term.col = Math.max(0, (n[0] || 1) - 1); break;
      default: break;
    }
  }

  function write(text) {
    var i = 0;
    while (i < text.length) {
      var c = text[i];
      if (c === '\u001b') {
        var kind = text[i + 1];
        if (kind === '[') {
          var j = i + 2;
          while (j < text.length && !/[@-~]/.test(text[j])) { j += 1; }
          csi(text.slice(i + 2, j).replace(/[?>=]/g, ''), text[j]);
          i = j + 1;
        } else if (kind === ']') {
          var end = text.indexOf('\u0007', i);
          var st = text.indexOf('\u001b\\', i);
          if (end < 0 || (st >= 0 && st < end)) { end = st >= 0 ? st + 1 : text.length; }
          i = end + 1;
        } else {
          i += 2;
        }
        continue;
      }
      if (c === '\r') { term.col = 0; }
      else if (c === '\n') { newline(); }
      else if (c === '\b') { term.col = Math.max(0, term.col - 1); }
      else if (c >= ' ') { put(c); }
      i += 1;
    }
  }

  function fmt(t) {
    var s = Math.floor(t);
    return Math.floor(s / 60) + ':' + ('0' + (s % 60)).slice(-2);
  }

  function render() {
    screen.textContent = term.lines.slice(-rows).join('\n');
    clock.textContent = fmt(position) + ' / ' + fmt(duration);
    seek.value = duration > 0 ? Math.round(1000 * position / duration) : 0;
  }

  function advance(to) {
    while (next < events.length && events[next][0] <= to) {
      write(events[next][2]);
      next += 1;
    }
    position = to;
    render();
  }

  function frame(now) {
    if (!playing) { return; }
    var speed = parseFloat(speedSelect.value) || 1;
    var to = position + (now - last) / 1000 * speed;
    last = now;
    if (to >= duration) {
      advance(duration);
      playing = false;
      playButton.textContent = 'Play';
      return;
    }
    advance(to);
    window.requestAnimationFrame(frame);
  }

  playButton.addEventListener('click', function () {
    if (playing) {
      playing = false;
      playButton.textContent = 'Play';
      return;
    }
    if (position >= duration) { reset(); position = 0; }
    playing = true;
    playButton.textContent = 'Pause';
    last = performance.now();
    window.requestAnimationFrame(frame);
  });

  seek.addEventListener('input', function () {
    reset();
    advance(duration * seek.value / 1000);
  });

  fetch(el.dataset.cast, { credentials: 'same-origin' })
    .then(function (r) {
      if (!r.ok) { throw new Error('HTTP ' + r.status); }
      return r.text();
    })
    .then(function (text) {
      var lines = text.split('\n');
      try { rows = Math.min(JSON.parse(lines[0]).height || 24, 60); } catch (e) { rows = 24; }
      lines.slice(1).forEach(function (line) {
        try {
          var e = JSON.parse(line);
          if (e[1] === 'o') { events.push(e); }
        } catch (err) { /* the last line of a cut recording may be partial */ }
      });
      duration = events.length ? events[events.length - 1][0] : 0;
      reset();
      position = 0;
      // The whole session at once; Play replays it from the start.
      advance(duration);
      el.dataset.ready = 'true';
    })
    .catch(function (e) {
      screen.textContent = 'The recording could not be loaded (' + e.message + ').';
    });
}());
