// WebAuthn glue for passkeys. A form with data-register (add a passkey), data-step-up (approve,
// remove a passkey) or data-signin (sign in) first posts its CSRF token (or organisation) to
// that URL for a challenge, asks the browser's authenticator, puts the ceremony id and the
// answer (JSON) into the form's hidden fields, and then submits the form as usual.
(function () {
  if (!window.PublicKeyCredential) { return; }

  function fromB64url(s) {
    s = s.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) { s += '='; }
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }
  function toB64url(buf) {
    var bytes = new Uint8Array(buf), bin = '';
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  function ids(list) {
    return (list || []).map(function (c) { return Object.assign({}, c, { id: fromB64url(c.id) }); });
  }

  function create(options) {
    var pk = options.publicKey;
    pk.challenge = fromB64url(pk.challenge);
    pk.user.id = fromB64url(pk.user.id);
    pk.excludeCredentials = ids(pk.excludeCredentials);
    return navigator.credentials.create({ publicKey: pk }).then(function (c) {
      return {
        id: c.id, rawId: toB64url(c.rawId), type: c.type, extensions: {},
        response: {
          attestationObject: toB64url(c.response.attestationObject),
          clientDataJSON: toB64url(c.response.clientDataJSON),
          transports: c.response.getTransports ? c.response.getTransports() : []
        }
      };
    });
  }

  function get(options, extra) {
    var pk = options.publicKey;
    pk.challenge = fromB64url(pk.challenge);
    pk.allowCredentials = ids(pk.allowCredentials);
    return navigator.credentials.get(Object.assign({ publicKey: pk }, extra || {})).then(function (c) {
      return {
        id: c.id, rawId: toB64url(c.rawId), type: c.type, extensions: {},
        response: {
          authenticatorData: toB64url(c.response.authenticatorData),
          clientDataJSON: toB64url(c.response.clientDataJSON),
          signature: toB64url(c.response.signature),
          userHandle: c.response.userHandle ? toB64url(c.response.userHandle) : null
        }
      };
    });
  }

  function challenge(form, url, fields) {
    var body = new URLSearchParams();
    fields.forEach(function (name) {
      var input = form.querySelector('[name="' + name + '"]:checked') || form.querySelector('[name="' + name + '"]');
      if (input) { body.append(name, input.value); }
    });
    var headers = { Accept: 'application/json' };
    return fetch(url, { method: 'POST', body: body, headers: headers, credentials: 'same-origin' }).then(function (res) {
      return res.json().then(function (json) {
        if (!res.ok) { throw new Error((json.error && json.error.message) || res.statusText); }
        return json;
      });
    });
  }

  function show(form, err) {
    var box = form.querySelector('.passkey-error');
    if (box) { box.textContent = String(err.message || err); box.hidden = false; } else { alert(err.message || err); }
  }

  // A pending autofill (conditional) passkey request, aborted when a button asks instead.
  var conditional = null;

  function wire(attr, fields, ceremony, wanted) {
    document.querySelectorAll('form[' + attr + ']').forEach(function (form) {
      form.addEventListener('submit', function (ev) {
        if (form.querySelector('[name="credential"]').value) { return; }
        if (wanted && !wanted(form)) { return; }
        ev.preventDefault();
        if (conditional) { conditional.abort(); conditional = null; }
        // Sign-in: the organisation typed into the email form counts for the passkey too.
        var typed = document.querySelector('form:not([data-signin]) input[name="tenant"]');
        var own = form.querySelector('input[name="tenant"]');
        if (typed && own && typed.value) { own.value = typed.value; }
        challenge(form, form.getAttribute(attr), fields).then(function (c) {
          return ceremony(c.options).then(function (answer) {
            form.querySelector('[name="ceremony"]').value = c.ceremony;
            form.querySelector('[name="credential"]').value = JSON.stringify(answer);
            form.submit();
          });
        }).catch(function (err) { show(form, err); });
      });
    });
  }

  wire('data-register', ['csrf'], create);
  // A new request: only break-glass asks for the passkey.
  wire('data-break-glass', ['csrf', 'profile'], get, function (form) {
    var box = form.querySelector('input[name="break_glass"]');
    return box && box.checked;
  });
  wire('data-step-up', ['csrf'], get);
  // Sign-in: a button everywhere, and where the browser offers passkeys in autofill, in the
  // email field too (conditional mediation), for the organisation already on the page.
  wire('data-signin', ['tenant'], function (options) { delete options.mediation; return get(options); });
  var signin = document.querySelector('form[data-signin]');
  var field = document.querySelector('input[autocomplete~="webauthn"]');
  if (signin && field && PublicKeyCredential.isConditionalMediationAvailable) {
    PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
      var tenant = signin.querySelector('input[name="tenant"]');
      if (!available || !tenant || !tenant.value || conditional) { return; }
      conditional = new AbortController();
      var signal = conditional.signal;
      challenge(signin, signin.getAttribute('data-signin'), ['tenant']).then(function (c) {
        if (signal.aborted) { return; }
        return get(c.options, { mediation: 'conditional', signal: signal }).then(function (answer) {
          signin.querySelector('[name="ceremony"]').value = c.ceremony;
          signin.querySelector('[name="credential"]').value = JSON.stringify(answer);
          signin.submit();
        });
      }).catch(function () { /* aborted for the button, or no passkey chosen */ });
    });
  }
})();
