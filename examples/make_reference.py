#!/usr/bin/env python3
"""Generate the general-knowledge reference set used to measure catastrophic forgetting.

`general.jsonl` holds 150 short passages of plain English prose (2-4 sentences each) about
geography, everyday science, nature, cooking and history; measure a model's perplexity on them
before and after fine-tuning. `prompts.jsonl` holds 30 general instructions to compare generations
before and after. The passages are assembled from the fact tables below with templates; the facts
are meant to be true and uncontroversial (rounded figures are marked "about" / "around"), and no
living person is named. Stdlib only, ``random.Random(seed)``; running the script twice gives
byte-identical files.

    python examples/make_reference.py            # writes examples/reference/*.jsonl
    python examples/make_reference.py --out DIR  # writes DIR/*.jsonl instead
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from random import Random

SEED = 31415
N_GENERAL = 150

# name, capital, region, language sentence, currency, one extra true fact
COUNTRIES = [
    ("France", "Paris", "Western Europe", "French is the official language", "the euro",
     "The Loire Valley in the centre of the country is famous for its castles."),
    ("Japan", "Tokyo", "East Asia", "Japanese is the main language", "the yen",
     "The country is made up of thousands of islands, and the largest of them is Honshu."),
    ("Brazil", "Brasília", "South America", "Portuguese is the official language", "the real",
     "It is the largest country in South America by both area and population."),
    ("Canada", "Ottawa", "North America", "English and French are both official languages", "the Canadian dollar",
     "By total area it is the second-largest country in the world."),
    ("Australia", "Canberra", "Oceania", "English is the main language", "the Australian dollar",
     "Sydney and Melbourne are its largest cities."),
    ("Egypt", "Cairo", "North Africa", "Arabic is the official language", "the Egyptian pound",
     "The Nile flows north through the country and into the Mediterranean Sea."),
    ("India", "New Delhi", "South Asia", "Hindi and English are used by the national government",
     "the Indian rupee", "Hundreds of languages are spoken across the country."),
    ("Kenya", "Nairobi", "East Africa", "Swahili and English are the official languages", "the Kenyan shilling",
     "The equator passes through the country."),
    ("Mexico", "Mexico City", "North America", "Spanish is by far the most widely spoken language",
     "the Mexican peso", "Mexico City was built on the site of an ancient Aztec city that stood on a lake."),
    ("Germany", "Berlin", "Central Europe", "German is the official language", "the euro",
     "The river Rhine flows through the west of the country."),
    ("Italy", "Rome", "Southern Europe", "Italian is the official language", "the euro",
     "The country is shaped roughly like a boot reaching into the Mediterranean Sea."),
    ("Spain", "Madrid", "southwestern Europe", "Spanish is the official language", "the euro",
     "Madrid sits close to the geographical centre of the Iberian Peninsula."),
    ("Norway", "Oslo", "Northern Europe", "Norwegian is the official language", "the Norwegian krone",
     "Its long western coastline is cut by deep, narrow inlets called fjords."),
    ("Sweden", "Stockholm", "Northern Europe", "Swedish is the official language", "the Swedish krona",
     "Stockholm is built across a group of islands where a lake meets the Baltic Sea."),
    ("Argentina", "Buenos Aires", "South America", "Spanish is the official language", "the Argentine peso",
     "The Andes mountains run along its western border with Chile."),
    ("Peru", "Lima", "South America", "Spanish is the most widely spoken language", "the sol",
     "The ancient Inca site of Machu Picchu lies high in its Andes mountains."),
    ("China", "Beijing", "East Asia", "Standard Mandarin is the official language", "the renminbi",
     "It is home to the Great Wall, which was built and rebuilt over many centuries."),
    ("South Korea", "Seoul", "East Asia", "Korean is the official language", "the won",
     "The country occupies the southern part of the Korean Peninsula."),
    ("Thailand", "Bangkok", "Southeast Asia", "Thai is the official language", "the baht",
     "Rice has long been one of its most important crops."),
    ("Vietnam", "Hanoi", "Southeast Asia", "Vietnamese is the official language", "the dong",
     "The country stretches in a long S shape down the eastern edge of the Indochinese Peninsula."),
    ("Turkey", "Ankara", "both southeastern Europe and western Asia", "Turkish is the official language",
     "the Turkish lira", "Its largest city, Istanbul, lies on both sides of the Bosphorus strait."),
    ("Greece", "Athens", "Southern Europe", "Greek is the official language", "the euro",
     "It has thousands of islands in the Aegean and Ionian seas."),
    ("Portugal", "Lisbon", "southwestern Europe", "Portuguese is the official language", "the euro",
     "Lisbon lies near the mouth of the river Tagus on the Atlantic coast."),
    ("the Netherlands", "Amsterdam", "Western Europe", "Dutch is the official language", "the euro",
     "The seat of government, however, is in The Hague."),
    ("Switzerland", "Bern", "Central Europe", "German, French, Italian and Romansh are all national languages",
     "the Swiss franc", "Much of the country is covered by the Alps."),
    ("Poland", "Warsaw", "Central Europe", "Polish is the official language", "the złoty",
     "The river Vistula flows through Warsaw on its way to the Baltic Sea."),
    ("Ireland", "Dublin", "Northwestern Europe", "Irish and English are both official languages", "the euro",
     "Its mild, wet climate keeps much of the countryside green all year."),
    ("New Zealand", "Wellington", "Oceania", "English is the most widely spoken language and Māori is an official language",
     "the New Zealand dollar", "It consists of two main islands, the North Island and the South Island."),
    ("Chile", "Santiago", "South America", "Spanish is the official language", "the Chilean peso",
     "It is a long, narrow country squeezed between the Andes and the Pacific Ocean."),
    ("Iceland", "Reykjavík", "the North Atlantic", "Icelandic is the official language", "the Icelandic króna",
     "Volcanoes and hot springs are common there, and geothermal energy heats most homes."),
    ("Nigeria", "Abuja", "West Africa", "English is the official language", "the naira",
     "It has the largest population of any country in Africa."),
    ("Morocco", "Rabat", "North Africa", "Arabic and Tamazight are the official languages", "the dirham",
     "The Atlas Mountains run across the country."),
]
COUNTRY_TEMPLATES = [
    "{Name} is a country in {region}. Its capital is {capital}, and {lang}. The currency is {currency}.",
    "The capital of {name} is {capital}. The country lies in {region}, and {lang}. {extra}",
    "{capital} is the capital city of {name}, a country in {region}. People there pay with {currency}. {extra}",
    "{Name} lies in {region}, and its capital is {capital}. {extra} The currency is {currency}.",
]

# name, order from the Sun, facts
PLANETS = [
    ("Mercury", "first", ["It is the smallest planet in the solar system.",
                          "It has no moons and almost no atmosphere.",
                          "A year on Mercury lasts only about 88 Earth days."]),
    ("Venus", "second", ["Its thick atmosphere of carbon dioxide traps heat, making it the hottest planet.",
                         "It spins in the opposite direction to most of the other planets.",
                         "After the Moon, it is often the brightest object in the night sky."]),
    ("Earth", "third", ["It is the only planet known to support life.",
                        "About 71 percent of its surface is covered by water.",
                        "It has one natural satellite, the Moon."]),
    ("Mars", "fourth", ["It looks red because its surface contains a lot of iron oxide, or rust.",
                        "It has two small moons called Phobos and Deimos.",
                        "Its volcano Olympus Mons is one of the largest in the solar system."]),
    ("Jupiter", "fifth", ["It is the largest planet in the solar system.",
                          "Its Great Red Spot is a giant storm that has been raging for at least 150 years.",
                          "It is a gas giant made mostly of hydrogen and helium."]),
    ("Saturn", "sixth", ["It is famous for its bright rings, which are made of ice and rock.",
                         "On average it is less dense than water.",
                         "It has many moons, the largest of which is Titan."]),
    ("Uranus", "seventh", ["It rotates on its side, with its axis tilted almost flat.",
                           "It is an ice giant with a pale blue-green colour.",
                           "It was the first planet discovered with the help of a telescope."]),
    ("Neptune", "eighth", ["It is the planet farthest from the Sun.",
                           "Its winds are the fastest measured on any planet.",
                           "Its existence was predicted by mathematics before it was first seen in 1846."]),
]
PLANET_TEMPLATES = [
    "{Name} is the {order} planet from the Sun. {f1} {f2}",
    "Counting outward from the Sun, {name} comes {order}. {f1} {f2} {f3}",
    "Of the eight planets, {name} is {order} in order from the Sun. {f1} {f2}",
]

# name, symbol, atomic number, facts
ELEMENTS = [
    ("Hydrogen", "H", 1, ["It is the lightest element and the most abundant one in the universe.",
                          "Stars like the Sun shine by fusing hydrogen into helium."]),
    ("Helium", "He", 2, ["It is a noble gas that hardly reacts with anything.",
                         "Because it is lighter than air, it is used to fill party balloons."]),
    ("Carbon", "C", 6, ["Diamond and graphite are both made of pure carbon.",
                        "It is found in every known living thing."]),
    ("Nitrogen", "N", 7, ["It makes up about 78 percent of the air we breathe.",
                          "Plants need it to grow, which is why it is found in most fertilisers."]),
    ("Oxygen", "O", 8, ["It makes up about 21 percent of Earth's atmosphere.",
                        "Animals need it to release energy from food."]),
    ("Neon", "Ne", 10, ["It glows a bright orange-red when electricity passes through it.",
                        "That glow is why glowing signs are often called neon signs."]),
    ("Sodium", "Na", 11, ["It is a soft metal that reacts strongly with water.",
                          "Table salt is a compound of sodium and chlorine.",
                          "Its symbol comes from its Latin name, natrium."]),
    ("Aluminium", "Al", 13, ["It is the most abundant metal in Earth's crust.",
                             "It is light and does not rust, so it is used for drink cans and aircraft."]),
    ("Silicon", "Si", 14, ["It is the second most abundant element in Earth's crust, after oxygen.",
                           "It is used to make computer chips and solar cells.",
                           "Sand is mostly made of silicon dioxide."]),
    ("Calcium", "Ca", 20, ["Bones and teeth contain a lot of it.",
                           "Chalk and limestone are forms of calcium carbonate."]),
    ("Iron", "Fe", 26, ["It is the main ingredient of steel.",
                        "Earth's core is made mostly of iron and nickel.",
                        "Its symbol comes from the Latin word ferrum."]),
    ("Copper", "Cu", 29, ["It conducts electricity very well, so it is used in electrical wiring.",
                          "Over time it develops a green coating called a patina."]),
    ("Silver", "Ag", 47, ["It conducts electricity better than any other metal.",
                          "Its symbol comes from the Latin word argentum."]),
    ("Gold", "Au", 79, ["It does not rust or tarnish, which is one reason it has been valued for thousands of years.",
                        "It is so soft that it can be beaten into extremely thin sheets.",
                        "Its symbol comes from the Latin word aurum."]),
    ("Mercury", "Hg", 80, ["It is the only metal that is liquid at room temperature.",
                           "It was once widely used in thermometers."]),
    ("Lead", "Pb", 82, ["It is a heavy, soft metal.",
                        "Its symbol comes from the Latin word plumbum, which also gave us the word plumber."]),
]
ELEMENT_TEMPLATES = [
    "{Name} is a chemical element with the symbol {symbol} and atomic number {number}. {f1} {f2}",
    "The element {name_lc} has the symbol {symbol}. {f1} {f2}",
    "Number {number} in the periodic table is {name_lc}, written {symbol}. {f1} {f2}",
]

# Hand-written passages: every entry is a list of true sentences; the first one always opens the
# passage and the generator keeps 2-4 of them.
ANIMALS = [
    ["The blue whale is the largest animal known to have ever lived.", "It can grow to around 30 metres long.",
     "Despite its size, it feeds mainly on tiny shrimp-like animals called krill."],
    ["The cheetah is the fastest land animal.", "In short bursts it can reach speeds of around 100 kilometres per hour.",
     "It relies on speed rather than strength to catch its prey."],
    ["Honeybees tell each other where to find food with a movement called the waggle dance.",
     "The angle of the dance shows the direction of the flowers, and its length hints at the distance.",
     "A single colony can contain tens of thousands of bees."],
    ["An octopus has three hearts and blue blood.", "It can change the colour and texture of its skin to hide.",
     "Each of its eight arms is lined with suckers that can taste as well as grip."],
    ["Penguins are birds that cannot fly.", "Their wings work as flippers, making them excellent swimmers.",
     "Almost all penguin species live in the Southern Hemisphere."],
    ["Bats are the only mammals capable of true flight.",
     "Many species find their way in the dark using echolocation, listening for the echoes of their own calls.",
     "Some bats help plants by spreading pollen and seeds."],
    ["The giraffe is the tallest living animal.", "Its long neck lets it eat leaves high up in the trees.",
     "Like most mammals, including humans, it has only seven bones in its neck."],
    ["Hummingbirds can hover in one place and even fly backwards.",
     "Their wings beat so fast that they make a humming sound.",
     "They feed on nectar from flowers."],
    ["Koalas live in eastern Australia and feed almost entirely on eucalyptus leaves.",
     "Because the leaves provide little energy, koalas sleep for much of the day.",
     "Despite their nickname, koalas are marsupials, not bears."],
    ["A polar bear's fur looks white, but the skin underneath is black.",
     "Polar bears live around the Arctic and hunt seals from the sea ice.",
     "They are strong swimmers."],
    ["Sharks have skeletons made of cartilage rather than bone.",
     "Cartilage is the same flexible material found in the human nose and ears.",
     "Sharks have existed for hundreds of millions of years."],
    ["Butterflies go through a complete change of body shape called metamorphosis.",
     "They start as eggs, hatch into caterpillars, form a chrysalis and finally emerge as adults.",
     "Caterpillars spend most of their time eating."],
    ["Many salmon hatch in rivers, spend years at sea and then return to the river where they were born.",
     "They swim upstream, sometimes leaping up waterfalls, to lay their eggs.",
     "Scientists think they find their way partly by smell."],
    ["A camel's hump stores fat, not water.", "The fat can be used for energy when food is scarce.",
     "Camels can go for long periods without drinking."],
    ["Owls can turn their heads about 270 degrees.", "They need to, because their eyes cannot move in their sockets.",
     "Soft feathers allow many owls to fly almost silently."],
    ["Dolphins find food using echolocation.", "They make clicking sounds and listen for the echoes.",
     "They are mammals, so they must come to the surface to breathe air."],
    ["Frogs are amphibians, which means many of them spend part of their lives in water and part on land.",
     "They start life as tadpoles that breathe with gills.", "Many adult frogs can absorb water through their skin."],
    ["Elephants are the largest land animals alive today.",
     "They use their trunks to breathe, smell, drink and pick things up.",
     "Elephants live in close family groups led by an older female."],
]
EVERYDAY_SCIENCE = [
    ["The sky looks blue because air scatters blue light from the Sun more than red light.",
     "Blue light has a shorter wavelength, so it bounces around the atmosphere and reaches our eyes from every direction.",
     "At sunrise and sunset the light travels through more air, which is why the sky can turn orange and red."],
    ["A rainbow appears when sunlight is bent and reflected inside raindrops.",
     "Each colour bends by a slightly different amount, so white light spreads into a band of colours.",
     "To see a rainbow, the Sun has to be behind you."],
    ["At sea level, pure water boils at 100 degrees Celsius.",
     "High in the mountains the air pressure is lower, so water boils at a lower temperature.",
     "That is why cooking pasta or eggs takes longer at high altitude."],
    ["Ice floats because it is less dense than liquid water.",
     "When water freezes, its molecules lock into an open pattern that takes up more space.",
     "This is why lakes freeze from the top down, letting fish survive underneath."],
    ["Earth has seasons because its axis is tilted.",
     "For part of the year one hemisphere leans towards the Sun and gets more direct sunlight and longer days.",
     "The seasons are not caused by changes in Earth's distance from the Sun."],
    ["Thunder is the sound made by lightning.",
     "A lightning bolt heats the air so quickly that it expands with a loud crack.",
     "Light travels much faster than sound, so we see the flash before we hear the thunder."],
    ["The Moon does not make its own light; it reflects light from the Sun.",
     "As the Moon orbits Earth, we see different amounts of its sunlit half.",
     "These changing shapes are called the phases of the Moon."],
    ["Ocean tides are caused mainly by the Moon's gravity pulling on Earth's water.",
     "Many coastlines have two high tides and two low tides roughly every day.",
     "The Sun's gravity also plays a smaller part."],
    ["Plants make their own food through photosynthesis.",
     "They use energy from sunlight to turn water and carbon dioxide into sugar.",
     "Oxygen is released as a by-product."],
    ["Many leaves turn yellow and orange in autumn because the green pigment chlorophyll breaks down.",
     "As the green fades, other pigments that were there all along become visible.",
     "Shorter days and cooler temperatures trigger the change."],
    ["Spreading salt on icy roads helps because salt water freezes at a lower temperature than pure water.",
     "The salt dissolves into the thin layer of water on the ice and stops it from refreezing.",
     "In very cold weather, salt works less well."],
    ["A metal spoon feels colder than a wooden one at the same temperature.",
     "Metal conducts heat away from your hand much faster than wood does.",
     "Your skin senses that loss of heat as cold."],
    ["Sound cannot travel through empty space.",
     "It needs a material such as air, water or a solid to carry its vibrations.",
     "That is why space is silent, even though light from distant stars reaches us."],
    ["Rust forms when iron reacts with oxygen and water.", "Salt water speeds up the process.",
     "Paint, oil and other coatings protect iron by keeping air and water away."],
    ["A compass needle is a small magnet.", "It lines up with Earth's magnetic field and points roughly north.",
     "Magnetic north is not exactly the same place as the geographic North Pole."],
    ["Light from the Sun takes about eight minutes to reach Earth.",
     "Light travels at almost 300,000 kilometres per second.",
     "When we look at the Sun, we see it as it was a few minutes ago."],
    ["An adult human skeleton usually has 206 bones.", "Babies are born with more, and some of them fuse as they grow.",
     "The smallest bones are in the middle ear."],
    ["Red blood cells carry oxygen around the body.",
     "They contain a protein called haemoglobin, which binds to oxygen in the lungs.",
     "The heart pumps blood through the body continuously."],
    ["Soap removes grease because its molecules have two different ends.",
     "One end is attracted to water and the other to oil and fat.",
     "The molecules surround small drops of grease so they can be rinsed away."],
    ["Clouds form when moist air rises and cools.",
     "The water vapour condenses into tiny droplets around specks of dust.",
     "Billions of these droplets together make a visible cloud."],
    ["Earthquakes happen when huge slabs of Earth's crust, called tectonic plates, move against each other.",
     "Stress builds up along faults and is released suddenly.",
     "The energy travels through the ground as seismic waves."],
    ["Dew forms on clear, calm nights when the ground cools down.",
     "The air touching the cold grass cools too, and its water vapour condenses into droplets.",
     "If it is cold enough, frost forms instead."],
]
COOKING = [
    ["Bread rises because yeast feeds on sugars in the dough and releases carbon dioxide.",
     "The gas forms bubbles that get trapped in a stretchy network of gluten.",
     "Baking sets this structure, giving the bread its airy crumb."],
    ["Kneading dough develops gluten, a network of proteins from the wheat flour.",
     "The more the dough is worked, the stronger and more elastic it becomes.",
     "That is why bread dough is kneaded for a long time, while pastry is handled as little as possible."],
    ["Browning on toast, roasted coffee and seared meat comes from the Maillard reaction.",
     "It is a reaction between amino acids and sugars that happens at high temperatures.",
     "It creates hundreds of new flavour and aroma compounds."],
    ["When sugar is heated on its own, it melts and then turns brown.",
     "This is called caramelisation.",
     "The longer it cooks, the darker and more bitter the caramel becomes."],
    ["Cutting an onion releases a sulphur compound that irritates the eyes.",
     "The eyes produce tears to wash it away.",
     "Chilling the onion or using a very sharp knife can reduce the effect."],
    ["Baking soda is a base that releases carbon dioxide when it meets an acid.",
     "Recipes that use it usually include an acidic ingredient such as buttermilk, yoghurt or lemon juice.",
     "Baking powder already contains both the base and a dry acid."],
    ["Mayonnaise is an emulsion, a mixture of two liquids that normally do not mix.",
     "Oil is whisked slowly into egg yolk with a little vinegar or lemon juice.",
     "Lecithin in the yolk helps keep the tiny oil droplets from separating."],
    ["Chocolate is tempered by heating and cooling it to carefully controlled temperatures.",
     "This makes the cocoa butter set into stable crystals.",
     "Well-tempered chocolate is glossy and breaks with a clean snap."],
    ["Yoghurt is made by adding bacteria to warm milk.",
     "The bacteria turn the milk sugar lactose into lactic acid.",
     "The acid makes the milk proteins thicken and gives yoghurt its tangy taste."],
    ["Cut apples and avocados turn brown when enzymes in the fruit react with oxygen in the air.",
     "A squeeze of lemon juice slows the browning.",
     "Keeping the cut surface covered helps as well."],
    ["Sourdough bread is leavened by a starter of wild yeast and bacteria instead of packet yeast.",
     "The bacteria produce acids that give the bread its sour flavour.",
     "A starter has to be fed with flour and water regularly to stay active."],
    ["The Italian phrase al dente means \"to the tooth\".",
     "It describes pasta that is cooked through but still slightly firm when bitten.",
     "Pasta keeps softening for a moment after it is drained."],
    ["Floury potatoes are best for mashing and baking because they fall apart into a fluffy texture.",
     "Waxy potatoes hold their shape, so they suit salads and stews.",
     "The difference comes mostly from how much starch each type contains."],
    ["Starchy pasta cooking water is useful for making sauces.",
     "A splash helps the sauce cling to the pasta and gives it a silky texture.",
     "Many cooks save a cup of it before draining."],
    ["Risotto gets its creamy texture from the starch released by short-grain rice as it is stirred.",
     "Hot stock is added a little at a time.",
     "The rice should still have a slight bite when it is served."],
    ["Pickling preserves food by surrounding it with acid.",
     "Vinegar pickles are quick to make, while pickles like sauerkraut rely on fermentation.",
     "The acid stops most harmful microbes from growing."],
    ["Cheese is made by curdling milk so that it separates into solid curds and liquid whey.",
     "The curds are pressed, salted and often left to age.",
     "Ageing develops stronger flavours and firmer textures."],
    ["Resting dough in the fridge makes it easier to roll out.",
     "The cold firms up the butter, and the gluten relaxes.",
     "This helps pastry hold its shape in the oven."],
    ["Whisking egg whites traps air in a foam held together by proteins.",
     "A clean, grease-free bowl helps the foam form.",
     "The foam is what makes meringues and soufflés light."],
    ["Searing meat does not seal in its juices, despite the old saying.",
     "What it does is create a browned, flavourful crust.",
     "Letting the meat rest before cutting makes it easier to slice neatly."],
]
HISTORY = [
    ["The Great Pyramid of Giza was built around 4,500 years ago for a king of ancient Egypt.",
     "For thousands of years it was the tallest structure made by humans.",
     "It is the only one of the Seven Wonders of the Ancient World that still stands."],
    ["Stonehenge in southern England was built in several stages, starting around 5,000 years ago.",
     "Some of its stones were brought from hills in Wales, more than 200 kilometres away.",
     "Its main axis lines up with the sunrise at the summer solstice."],
    ["The Colosseum in Rome opened in the year 80.", "It could hold tens of thousands of spectators.",
     "Crowds came to watch gladiator fights and other public shows."],
    ["The Great Wall of China was built and rebuilt by different dynasties over many centuries.",
     "Much of the wall that survives today dates from the Ming dynasty.",
     "It was meant to protect the northern borders of the empire."],
    ["The Magna Carta was sealed in England in 1215.",
     "It limited the power of the king and stated that no one was above the law.",
     "It became an important symbol of individual rights."],
    ["In the middle of the fourteenth century a plague known as the Black Death swept across Europe.",
     "It killed a large share of the population, perhaps a third or more.",
     "It was caused by a bacterium that is often spread by fleas."],
    ["Printing with movable metal type spread through Europe after it was developed in Mainz around 1440.",
     "Books became much cheaper and faster to produce.",
     "This helped new ideas travel quickly across the continent."],
    ["In 1492 an expedition sponsored by the Spanish crown crossed the Atlantic and reached the Caribbean.",
     "It began lasting contact between Europe and the Americas.",
     "The voyage was made in three small sailing ships."],
    ["The Industrial Revolution began in Britain in the second half of the eighteenth century.",
     "Steam engines and machines in factories changed how goods were made.",
     "Many people moved from the countryside to fast-growing towns."],
    ["The Rosetta Stone was found in Egypt in 1799.",
     "It carries the same decree written in hieroglyphs, Demotic script and ancient Greek.",
     "Comparing the texts helped scholars finally read Egyptian hieroglyphs."],
    ["The Suez Canal opened in 1869 and linked the Mediterranean Sea with the Red Sea.",
     "Ships travelling between Europe and Asia no longer had to sail around Africa.",
     "It remains one of the busiest waterways in the world."],
    ["The first telephone patent was granted in 1876.",
     "Within a few decades, telephone lines connected cities across many countries.",
     "Early phone calls went through operators who connected them by hand."],
    ["The first powered, controlled aeroplane flight took place in 1903 at Kitty Hawk, North Carolina.",
     "The first flight that day lasted only about 12 seconds.",
     "Within a few decades aircraft were crossing oceans."],
    ["The Titanic sank in April 1912 on its first voyage, after hitting an iceberg in the North Atlantic.",
     "More than 1,500 people died.",
     "The disaster led to new rules requiring enough lifeboats for everyone on board."],
    ["The Panama Canal opened in 1914.", "It lets ships pass between the Atlantic and Pacific oceans.",
     "A system of locks raises and lowers ships as they cross the country."],
    ["Penicillin, the first widely used antibiotic, was discovered in 1928.",
     "It was noticed when a mould stopped bacteria from growing in a laboratory dish.",
     "Mass production in the 1940s saved many lives."],
    ["The Second World War ended in 1945.", "It was the deadliest conflict in human history.",
     "Afterwards, the United Nations was founded to help keep peace between countries."],
    ["The first modern Olympic Games were held in Athens in 1896.",
     "They were inspired by the ancient games held at Olympia in Greece.",
     "Today the Summer and Winter Games take place two years apart."],
    ["Humans first walked on the Moon in July 1969 during the Apollo 11 mission.",
     "Two astronauts spent about two and a half hours outside their lander.",
     "They brought back rock and soil samples for scientists to study."],
    ["The Berlin Wall, which divided the city from 1961, fell in November 1989.",
     "Its fall became a symbol of the end of the Cold War.",
     "Germany was reunified less than a year later."],
    ["The World Wide Web was proposed in 1989 by a scientist working at CERN, near Geneva.",
     "It was designed to help researchers share documents over the internet.",
     "Web pages link to one another using hyperlinks."],
    ["Norse explorers reached North America around the year 1000.",
     "Remains of their settlement have been found at L'Anse aux Meadows in Newfoundland, Canada.",
     "This was nearly 500 years before the Atlantic crossing of 1492."],
]
GEOGRAPHY = [
    ["The Nile and the Amazon are the two longest rivers in the world, each more than 6,000 kilometres long.",
     "The Amazon carries far more water than any other river.",
     "Which of the two is longer depends on how their sources are measured."],
    ["Mount Everest is the highest mountain above sea level, at about 8,849 metres.",
     "It stands on the border between Nepal and China in the Himalayas.",
     "The Himalayas formed as the Indian plate pushed into Asia."],
    ["The Pacific is the largest and deepest of Earth's oceans.",
     "Its Mariana Trench reaches a depth of almost 11,000 metres.",
     "The Pacific covers about a third of the planet's surface."],
    ["The Sahara is the largest hot desert in the world.",
     "It stretches across much of North Africa.",
     "The largest desert of all is Antarctica, because a desert is defined by how little precipitation it receives."],
    ["Lake Baikal in Siberia is the deepest lake on Earth.",
     "It holds about a fifth of the world's unfrozen fresh surface water.",
     "It is also one of the oldest lakes in the world."],
    ["The shores of the Dead Sea are the lowest land on Earth's surface.",
     "Its water is so salty that people float in it easily.",
     "Fish cannot live in its water, although some microbes can."],
    ["Greenland is the largest island in the world that is not a continent.",
     "Most of it is covered by a thick ice sheet.",
     "It is a self-governing territory within the Kingdom of Denmark."],
    ["Russia is the largest country in the world by area.", "It spans eleven time zones.",
     "It stretches across both Eastern Europe and northern Asia."],
    ["Vatican City is the smallest country in the world.", "It lies entirely within the city of Rome.",
     "It covers less than half a square kilometre."],
    ["The Great Barrier Reef off the coast of Queensland, Australia, is the largest coral reef system in the world.",
     "It is made up of thousands of individual reefs.",
     "It stretches for more than 2,000 kilometres."],
    ["The Andes are the longest mountain range on any continent.",
     "They run along the western side of South America for about 7,000 kilometres.",
     "Many of their peaks are volcanoes."],
    ["Antarctica is the coldest, windiest and highest continent on average.",
     "Nearly all of it is covered by ice.",
     "Under an international treaty, it is set aside for peaceful purposes and science."],
    ["The Mediterranean Sea is connected to the Atlantic Ocean by the narrow Strait of Gibraltar.",
     "It is bordered by countries in Europe, Africa and Asia.",
     "Hot, dry summers and mild, wet winters like those around its shores are known as a Mediterranean climate."],
    ["The Amazon rainforest is the largest tropical rainforest in the world.",
     "Most of it lies in Brazil.",
     "It is home to an enormous variety of plants and animals."],
]

PROMPTS = [
    "Explain why the sky is blue in one sentence.",
    "Write a short haiku about autumn leaves.",
    "Give three tips for getting a good night's sleep.",
    "What is the difference between weather and climate? Answer in two sentences.",
    "Translate 'Good morning, how are you?' into French.",
    "List the planets of the solar system in order from the Sun.",
    "Summarise the water cycle for a ten-year-old.",
    "Suggest a name for a friendly robot and explain your choice in one sentence.",
    "Write a polite email declining an invitation to a meeting.",
    "What is photosynthesis? Keep it under 40 words.",
    "Give me a simple recipe for scrambled eggs.",
    "Explain what a prime number is and give two examples.",
    "Write a four-line poem about the sea.",
    "Why do we have seasons on Earth?",
    "Name three renewable sources of energy and one advantage of each.",
    "Describe the taste of a lemon to someone who has never had one.",
    "What are the main causes of rust, and how can it be prevented?",
    "Write a one-paragraph story about a lost umbrella.",
    "Explain the difference between a virus and a bacterium in simple terms.",
    "How many minutes are there in a day? Show your working.",
    "Give two arguments for learning a second language.",
    "What does a thermometer measure, and how does it work?",
    "Rewrite this sentence in the past tense: 'She walks to the market every morning.'",
    "Suggest three things to pack for a day hike.",
    "Explain why ice floats on water.",
    "What is the capital of Japan, and what is one thing it is known for?",
    "Write a short thank-you note to a neighbour who watered your plants.",
    "Describe how bread rises, in three sentences or fewer.",
    "Convert 5 kilometres to miles and explain how you did it.",
    "What is the largest ocean on Earth?",
]


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def passage(rng: Random, sentences: list[str]) -> str:
    """The first sentence plus 1-3 of the others, in their original order."""
    rest = sentences[1:]
    k = rng.randint(1, len(rest))
    keep = sorted(rng.sample(range(len(rest)), k))
    return " ".join([sentences[0]] + [rest[i] for i in keep])


def build_general(rng: Random) -> list[str]:
    texts: list[str] = []
    for name, capital, region, lang, currency, extra in COUNTRIES:
        t = rng.choice(COUNTRY_TEMPLATES)
        if extra.startswith("It "):  # name the country, so "it" never points at the wrong noun
            extra = cap(name) + extra[2:]
        elif extra.startswith("Its "):
            extra = cap(name) + "'s" + extra[3:]
        texts.append(t.format(Name=cap(name), name=name, capital=capital, region=region, lang=lang,
                              currency=currency, extra=extra))
    for name, order, facts in PLANETS:
        f = list(facts)
        rng.shuffle(f)
        t = rng.choice(PLANET_TEMPLATES)
        texts.append(t.format(Name=name, name=name, order=order, f1=f[0], f2=f[1], f3=f[2]))
    for name, symbol, number, facts in ELEMENTS:
        f = list(facts)
        rng.shuffle(f)
        t = rng.choice(ELEMENT_TEMPLATES)
        texts.append(t.format(Name=name, name_lc=name.lower(), symbol=symbol, number=number, f1=f[0], f2=f[1]))
    for group in (ANIMALS, EVERYDAY_SCIENCE, COOKING, HISTORY, GEOGRAPHY):
        for sentences in group:
            texts.append(passage(rng, sentences))
    return texts


def build() -> dict[str, list[dict]]:
    rng = Random(SEED)
    texts = build_general(rng)
    assert len(texts) >= N_GENERAL, len(texts)
    assert len(set(texts)) == len(texts)
    rng.shuffle(texts)
    general = [{"id": f"ref-{i:04d}", "text": t} for i, t in enumerate(texts[:N_GENERAL], start=1)]
    prompts = [{"id": f"prompt-{i:02d}", "prompt": p} for i, p in enumerate(PROMPTS, start=1)]
    return {"general.jsonl": general, "prompts.jsonl": prompts}


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "reference",
                    help="directory to write general.jsonl and prompts.jsonl into (default: examples/reference)")
    args = ap.parse_args(argv)
    for name, records in build().items():
        write_jsonl(args.out / name, records)
        print(f"wrote {len(records):5d} records to {args.out / name}")


if __name__ == "__main__":
    main()
