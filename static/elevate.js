// Live countdowns for active grants: <span class="countdown" data-until="UNIX SECONDS">.
// Pages work without it (they show the end time).
(function () {
  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll('.countdown[data-until]').forEach(function (el) {
      var left = Math.floor(Number(el.getAttribute('data-until')) - now);
      if (left <= 0) { el.textContent = 'ended'; return; }
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = (h ? h + 'h ' : '') + (h || m ? m + 'm ' : '') + s + 's left';
    });
  }
  tick();
  setInterval(tick, 1000);
})();

// Certificate form: a chosen .pub file fills the public-key box (pasting works without this).
(function () {
  document.querySelectorAll('input[type=file][data-fills]').forEach(function (input) {
    input.addEventListener('change', function () {
      var target = document.getElementById(input.getAttribute('data-fills'));
      var file = input.files && input.files[0];
      if (!target || !file) { return; }
      file.text().then(function (text) { target.value = text.trim(); });
    });
  });
})();
