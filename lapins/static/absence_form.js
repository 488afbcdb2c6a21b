// The absence form: days and frequency only matter for a recurring absence (progressive enhancement).
(function () {
  var radios = document.querySelectorAll('input[name="kind"]');
  var blocks = document.querySelectorAll('[data-recurrence-only]');
  function sync() {
    var chosen = document.querySelector('input[name="kind"]:checked');
    var recurring = chosen && chosen.value === 'recurrente';
    blocks.forEach(function (block) { block.hidden = !recurring; });
  }
  radios.forEach(function (radio) { radio.addEventListener('change', sync); });
  sync();
})();
