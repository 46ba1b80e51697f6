"""Procedural generator of simple English children's stories (TinyStories-like).

This is LANTERN's built-in default corpus: it needs no download, costs nothing to
store, and gives a small model text with a clear, learnable structure (an opening,
a few events with dialogue, an ending with a moral).  Everything is driven by an
explicit ``random.Random``, so a seed always yields the same corpus on any machine.

Templates are ``str.format`` strings.  ``{a.name}``, ``{a.he}``, ``{a.His}``... read
the hero ``a`` and the friend ``b``; any other slot such as ``{toy}`` draws a word
from ``WORDS`` the first time it is used in a template group and keeps it for the
rest of the group.  ``{toy:a}`` adds the right article ("a red ball", "an old kite"),
and ``{spot1}``/``{spot2}`` draw distinct words from the same list.  Each template
string is exactly one sentence, and a quotation in the middle of a sentence is
always followed by a lowercase word, so sentences are easy to count.

Word lists avoid words whose first letter misleads the a/an rule ("hour", "unicorn").
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["build_corpus", "generate_stories", "generate_story", "iter_stories"]

# An opening (<= 2 + setting), MIN_EVENTS events (<= 3 each) and an ending (<= 2)
# always fit in MAX_SENTENCES; extra events are dropped when they do not.
MAX_SENTENCES = 12
MIN_EVENTS = 2
MAX_EVENTS = 5

# ---------------------------------------------------------------------------
# Characters
# ---------------------------------------------------------------------------

GIRL_NAMES = (
    "Lily", "Mia", "Emma", "Sara", "Lucy", "Anna", "Zoe", "Ella", "Ruby", "Rosa",
    "Maya", "Nora", "Amy", "Ivy", "Grace", "Hannah", "Chloe", "Daisy", "Molly", "Olivia",
    "Sophie", "Clara", "Luna", "Hazel", "Alice", "Jenny", "Kate", "Nina", "Tara", "Bella",
)
BOY_NAMES = (
    "Tom", "Ben", "Max", "Leo", "Jack", "Tim", "Noah", "Finn", "Oliver", "Jake",
    "Luke", "Henry", "Oscar", "Theo", "Adam", "Eli", "Owen", "Ryan", "Dan", "Mark",
    "Peter", "Hugo", "Kai", "Ivan", "Omar", "Ravi", "Milo", "Felix", "Jonah", "Sid",
)
NEUTRAL_NAMES = (
    "Sam", "Alex", "Robin", "Jamie", "Charlie", "Riley", "Jordan", "Casey", "Taylor",
    "Quinn", "Rowan", "Sky", "Ari", "Remy", "Jesse", "Frankie", "Morgan", "Drew",
)
PET_NAMES = (
    "Pip", "Spot", "Coco", "Biscuit", "Pepper", "Nutmeg", "Bubbles", "Whiskers", "Sunny",
    "Button", "Ziggy", "Patch", "Hoppy", "Fluffy", "Peanut", "Ginger", "Muffin", "Pebble",
    "Tiny", "Rusty", "Dot", "Socks", "Bean", "Cookie", "Honey", "Maple", "Scout", "Tumble",
    "Twig", "Acorn", "Bramble", "Clover", "Puddle", "Toffee", "Wiggles", "Snowy",
)
NAMES_FOR = {"he": BOY_NAMES, "she": GIRL_NAMES, "they": NEUTRAL_NAMES}

# (subject, object, possessive, reflexive, past of "to be")
PRONOUNS = {
    "he": ("he", "him", "his", "himself", "was"),
    "she": ("she", "her", "her", "herself", "was"),
    "they": ("they", "them", "their", "themself", "were"),
}
# Animals and roles without a fixed pronoun draw one from here.
ANY_PRONOUN = ("he", "she", "he", "she", "they")

CHILDREN = (("girl", "she"), ("boy", "he"), ("kid", "they"), ("child", "they"))
CHILD_ADJECTIVES = (
    "little", "young", "small", "happy", "shy", "curious", "brave", "kind", "clever",
    "cheerful", "friendly", "busy", "playful", "thoughtful",
)
# (animal, the limb it holds things with)
ANIMALS = (
    ("rabbit", "paw"), ("bunny", "paw"), ("fox", "paw"), ("bear", "paw"), ("cat", "paw"),
    ("dog", "paw"), ("puppy", "paw"), ("kitten", "paw"), ("mouse", "paw"), ("owl", "wing"),
    ("duck", "wing"), ("frog", "foot"), ("turtle", "foot"), ("squirrel", "paw"),
    ("pig", "hoof"), ("cow", "hoof"), ("horse", "hoof"), ("lamb", "hoof"), ("goat", "hoof"),
    ("lion", "paw"), ("tiger", "paw"), ("elephant", "trunk"), ("monkey", "hand"),
    ("giraffe", "hoof"), ("penguin", "wing"), ("hedgehog", "paw"), ("deer", "hoof"),
    ("otter", "paw"), ("beaver", "paw"), ("panda", "paw"), ("koala", "paw"), ("hen", "wing"),
    ("goose", "wing"), ("badger", "paw"), ("wolf", "paw"), ("zebra", "hoof"),
    ("raccoon", "paw"), ("hamster", "paw"), ("parrot", "wing"), ("donkey", "hoof"),
    ("seal", "flipper"), ("dinosaur", "claw"),
)
ANIMAL_ADJECTIVES = (
    "little", "small", "fluffy", "tiny", "big", "young", "happy", "shy", "curious", "brave",
    "kind", "clever", "playful", "sleepy", "gentle", "friendly", "old", "grumpy", "silly",
    "spotted", "quiet", "hungry", "busy",
)
# (role, fixed pronoun or None, limb)
ROLES = (
    ("baker", None, "hand"), ("farmer", None, "hand"), ("teacher", None, "hand"),
    ("doctor", None, "hand"), ("pilot", None, "hand"), ("painter", None, "hand"),
    ("sailor", None, "hand"), ("knight", None, "hand"), ("wizard", None, "hand"),
    ("witch", "she", "hand"), ("fairy", None, "hand"), ("king", "he", "hand"),
    ("queen", "she", "hand"), ("prince", "he", "hand"), ("princess", "she", "hand"),
    ("giant", None, "hand"), ("robot", None, "hand"), ("dragon", None, "claw"),
    ("pirate", None, "hand"), ("gardener", None, "hand"), ("firefighter", None, "hand"),
    ("astronaut", None, "hand"), ("inventor", None, "hand"), ("clown", None, "hand"),
    ("builder", None, "hand"), ("librarian", None, "hand"), ("shepherd", None, "hand"),
    ("fisherman", "he", "hand"), ("mermaid", "she", "hand"),
)
ROLE_ADJECTIVES = (
    "old", "young", "kind", "friendly", "clever", "tall", "busy", "jolly", "gentle",
    "brave", "wise", "funny", "happy", "little", "cheerful", "proud",
)

# (preposition, place): "in the forest", "to the forest"
PLACES = (
    ("in", "park"), ("in", "forest"), ("on", "beach"), ("in", "garden"), ("on", "farm"),
    ("in", "village"), ("in", "meadow"), ("in", "town"), ("by", "lake"), ("by", "river"),
    ("on", "hill"), ("in", "castle"), ("in", "woods"), ("in", "valley"), ("by", "sea"),
    ("in", "jungle"), ("near", "pond"), ("on", "island"), ("in", "orchard"),
    ("in", "big city"), ("by", "old mill"), ("near", "mountains"),
)

# ---------------------------------------------------------------------------
# Slot words (see the module docstring); "toy" is built from two lists instead.
# ---------------------------------------------------------------------------

TOY_NOUNS = (
    "ball", "kite", "teddy bear", "toy car", "doll", "drum", "yo-yo", "puzzle", "jump rope",
    "toy boat", "toy train", "robot", "spinning top", "marble", "whistle", "balloon", "book",
    "hat", "scarf", "blanket", "ring", "backpack", "bell", "umbrella", "lunch box",
    "paper plane", "music box", "wagon", "bucket", "crown", "flute", "compass",
)
TOY_ADJECTIVES = (
    "red", "blue", "green", "yellow", "purple", "orange", "pink", "shiny", "old", "new",
    "little", "soft", "striped", "spotted", "golden", "silver", "wooden", "tiny", "bright",
)

WORDS = {
    "when": (
        "One day", "The next morning", "Later that day", "After lunch", "That afternoon",
        "One sunny morning", "One evening", "Soon after", "A few days later", "On Saturday",
        "Early one morning", "After breakfast",
    ),
    "spot": (
        "under the bed", "behind the sofa", "in the tall grass", "under a big leaf",
        "inside an old boot", "behind a rock", "in the toy box", "under the table",
        "next to the pond", "in a bush", "behind the door", "under a pile of leaves",
        "on top of the shelf", "in the garden", "in the kitchen sink", "under a bench",
    ),
    "good": (
        "happy", "glad", "proud", "excited", "cheerful", "thankful", "delighted", "joyful",
    ),
    "upset": ("upset", "worried", "sad", "unhappy"),
    "bad": (
        "sad", "scared", "worried", "upset", "lonely", "nervous", "cross", "grumpy", "unhappy",
        "gloomy",
    ),
    "trait": (
        "kind", "brave", "shy", "curious", "clever", "silly", "cheerful", "gentle", "helpful",
        "playful", "quiet", "friendly", "careful", "funny", "polite", "patient",
    ),
    "hobby": (
        "sing", "dance", "paint pictures", "read books", "climb trees", "play ball",
        "jump in puddles", "pick flowers", "build things", "run fast", "look at the stars",
        "tell jokes", "dig in the sand", "make up songs", "collect shiny stones",
        "splash in the pond", "draw", "play games", "ride a bike", "watch the clouds",
    ),
    "said": ("said", "said", "whispered"),
    "shouted": ("shouted", "cried", "yelled", "called"),
    "into_water": (
        "into the pond", "into the river", "into a deep puddle", "into the stream",
        "into the lake",
    ),
    "heavy": (
        "big basket of apples", "heavy box of books", "bag of flour", "pile of firewood",
        "bucket of water", "sack of potatoes", "long wooden ladder", "tall stack of plates",
        "giant pumpkin", "basket of laundry",
    ),
    "hard_task": (
        "reach the top shelf", "fix my kite", "tie this knot", "open this jar",
        "finish my puzzle", "find my way home", "climb this hill", "carry all these books",
    ),
    "critter": ("kitten", "bird", "squirrel", "baby owl", "chick", "mouse", "frog", "bunny"),
    "stuck": (
        "up in a tall tree", "on a high branch", "on the roof of the shed",
        "on top of a tall fence", "on a high rock",
    ),
    "shelter": (
        "in a cave", "under a wooden bridge", "inside an old barn", "in a hollow tree",
        "under a big rock", "inside a little hut", "under the porch",
    ),
    "goal": (
        "the big tree", "the old fence", "the top of the hill", "the pond", "the red barn",
        "the end of the road", "the garden gate", "the tall oak",
    ),
    "field": ("meadow", "field", "beach", "park", "yard", "hill"),
    "bake": (
        "cake", "chocolate cake", "apple pie", "berry pie", "loaf of bread", "pizza",
        "honey cake", "carrot cake", "lemon tart", "pumpkin pie", "cherry pie",
        "birthday cake", "banana cake", "giant cookie", "plum cake",
    ),
    "ingredient": (
        "flour", "sugar", "eggs", "butter", "milk", "honey", "berries", "nuts", "chocolate",
        "cinnamon", "raisins", "oats", "lemon juice", "cream", "apples",
    ),
    "elder": ("mom", "dad", "grandma", "grandpa", "aunt", "uncle"),
    "trip": (
        "the seaside", "the big city", "the zoo", "grandma's house", "the mountains",
        "a farm", "the circus", "the museum", "the lake", "the fair", "the countryside",
        "an island",
    ),
    "vehicle": (
        "by train", "by bus", "by boat", "in a little red car", "on their bikes",
        "in a hot air balloon",
    ),
    "sight": (
        "tall trees", "a big red barn", "boats on the water", "a castle on a hill",
        "cows in a field", "a waterfall", "flowers of every color", "a little bridge",
        "hot air balloons", "a giant wheel", "funny monkeys", "fish in a glass tank",
        "a lighthouse", "sheep on a hill", "an old windmill", "a rainbow",
    ),
    "item": (
        "a warm hat", "a snack", "a map", "a little blanket", "a water bottle",
        "a picture book", "a toothbrush", "a flashlight", "a notebook", "an apple",
        "a pair of socks", "a sun hat",
    ),
    "game": (
        "tag", "hide and seek", "catch", "pirates", "house", "leapfrog", "hopscotch", "ball",
        "marbles", "dress-up", "cards", "pretend",
    ),
    "skill": (
        "ride a bike", "swim", "read", "whistle", "climb trees", "bake bread", "play the drum",
        "fly a kite", "count to one hundred", "jump rope", "skate", "paint", "skip stones",
        "draw a cat", "sing a new song", "do a cartwheel", "plant seeds",
        "build a sandcastle", "tie a bow", "play the flute",
    ),
    "question": (
        "How do birds fly?", "Why is the sky blue?", "Where does the rain come from?",
        "Why do leaves fall?", "How do fish breathe?", "Why does the moon change shape?",
        "Where do the stars go in the day?", "How do bees make honey?",
    ),
    "snack": (
        "sandwich", "cookie", "muffin", "granola bar", "slice of bread", "cheese sandwich",
        "honey cake", "piece of toast",
    ),
    "fruit": (
        "apples", "berries", "cherries", "grapes", "plums", "strawberries", "pears", "oranges",
    ),
    "number": ("three", "five", "six", "ten", "seven", "eight", "twelve"),
    "treasure": (
        "shiny gold coin", "old map", "strange blue egg", "tiny silver key",
        "little wooden box", "smooth green stone", "bottle with a note inside",
        "big white feather", "old brass bell", "odd little shell", "glowing pebble",
    ),
    "night_sight": (
        "a shooting star", "the big round moon", "thousands of tiny stars", "a bright comet",
    ),
    "material": ("sand", "snow", "blocks", "pillows", "old boxes", "sticks and leaves"),
    "clothes": ("shirt", "coat", "boots", "socks", "hat", "scarf", "trousers"),
    "pretend": (
        "ship", "rocket", "race car", "castle", "train", "submarine", "airplane", "spaceship",
    ),
    "gift": (
        "card with a big red heart", "necklace of shells", "paper crown",
        "painting of the sea", "little clay bowl", "crown of flowers", "bracelet of beads",
        "poem about the stars", "box of cookies",
    ),
    "someone": (
        "their teacher", "grandma", "the old owl", "the baker", "their neighbor",
        "the farmer", "the mail carrier",
    ),
    "decoration": (
        "colorful balloons", "paper stars", "bright streamers", "a big banner",
        "strings of lights",
    ),
    "plant": ("sunflower", "bean", "pumpkin", "tomato", "carrot", "pea", "daisy", "strawberry"),
    "bug": ("ladybug", "caterpillar", "snail", "beetle", "ant", "butterfly", "grasshopper"),
}

# ---------------------------------------------------------------------------
# Story parts.  Every string is one sentence; openings introduce both characters.
# ---------------------------------------------------------------------------

OPENINGS = (
    ("Once upon a time, there was {a.desc}.",
     "{a.He} lived {in_place} with {a.his} best friend, {b.desc}."),
    ("Once upon a time, {in_place}, there lived {a.desc}.",
     "{a.His} best friend was {b.kind_desc} called {b.name}."),
    ("One day, {a.desc} woke up early and ran outside.",
     "{a.He} wanted to play with {a.his} friend {b.name}, {b.kind_desc}."),
    ("Long ago, {in_place}, there lived {a.desc} and {b.desc}.",),
    ("There once was {a.desc} who loved to {hobby}.",
     "{a.His} best friend was {b.desc}."),
    ("{a.desc} lived {in_place}.",
     "Every day, {a.he} played with {a.his} friend {b.name}, {b.kind_desc}."),
    ("Once upon a time, {a.name} and {b.name} were best friends.",
     "{a.name} was {a.kind_desc}, and {b.name} was {b.kind_desc}."),
    ("One sunny morning, {a.desc} went {to_place}.",
     "There, {a.he} met {b.desc}, and they soon became friends."),
    ("In a land far away, there lived {a.desc}.",
     "{a.He} {a.was} very {trait} and loved to {hobby} with {a.his} friend {b.name}."),
    ("Not long ago, {a.desc} and {b.desc} lived next to each other {in_place}.",),
    ("Every morning, {a.desc} went {to_place} to see {a.his} friend {b.name}.",),
    ("Once upon a time, there was {a.desc}.",
     "{a.He} loved to {hobby}, but most of all {a.he} loved spending time with {b.name}, "
     "{b.kind_desc}."),
    ("Long ago, there was {a.kind_desc} named {a.name} who was very {trait}.",
     "{a.name} and {b.desc} lived {in_place}."),
    ("This is a story about {a.desc}.",
     "{a.He} lived {in_place}, not far from {a.his} good friend {b.name}."),
    ("One day, {a.name}, {a.kind_desc}, was sitting {in_place}.",
     "{a.His} friend {b.name} came by to say hello."),
)

SETTINGS = (
    "The sun was shining, and the sky was bright and blue.",
    "It was a cold, windy morning, and the leaves were dancing in the air.",
    "Soft white snow covered the ground like a blanket.",
    "It had rained all night, and the grass was shiny and wet.",
    "Big fluffy clouds floated slowly across the sky.",
    "It was a warm spring day, and the flowers were just starting to bloom.",
    "It was a hot summer day, and the bees were buzzing everywhere.",
    "The air was cool, and the trees were turning red and gold.",
    "A gentle breeze was blowing, and the birds were singing in the trees.",
    "It was a gray and foggy morning, and everything was very quiet.",
)

# theme -> event templates (1-3 sentences each; short ones let 4-5 events fit)
EVENTS = {
    "lost": (
        ("{when}, {a.name} could not find {a.his} {toy}.",
         "{a.He} looked {spot1} and {spot2}, but it was not there.",
         "At last, {b.name} found it {spot3}, and {a.name} smiled a big smile."),
        ("{when}, {a.name} lost {a.his} {toy} {in_place}.",
         '"Oh no! Where is my {toy}?" {a.he} cried.',
         "{b.name} helped {a.him} look, and soon they found it {spot1}."),
        ("{a.name} had {toy:a} that {a.he} loved very much.",
         "One morning it was gone, and {a.name} felt very {bad}.",
         "Then {b.name} saw it {spot1} and gave it back to {a.him}."),
        ("While they were playing, {b.name} dropped {b.his} {toy} {into_water}.",
         "{a.name} reached out with a long stick and pulled it back.",
         '"Thank you so much!" {shouted} {b.name}.'),
        ("{a.name} dropped {a.his} {toy}, but {b.name} caught it just in time.",),
        ("{when}, {a.name} lost a boot in the mud.",
         "{b.name} helped {a.him} pull it out, and they both laughed."),
    ),
    "help": (
        ("{when}, {b.name} was trying to carry {heavy:a}, but it was too heavy.",
         '"Let me help you," {said} {a.name}.',
         "Together they carried it all the way home."),
        ("{when}, {b.name} looked very {upset}.",
         '"What is wrong?" asked {a.name}.',
         '"I cannot {hard_task}," {b.he} said, so {a.name} stayed and helped until it was '
         "done."),
        ("{when}, {a.name} saw a little {critter} stuck {stuck}.",
         "{a.He} climbed up carefully and brought it down.",
         "The little {critter} was safe, and {a.name} felt {good}."),
        ("{when}, {b.name} fell down and hurt {b.his} knee.",
         "{a.name} ran over and helped {b.him} up.",
         '"Thank you for being such a good friend," {b.he} said.'),
        ("{b.name}'s {toy} was broken, and {b.he} {b.was} very {bad}.",
         "{a.name} found some glue and string and fixed it.",
         "Now it was as good as new!"),
        ("{a.name} helped {b.name} pick up all the {fruit} that had fallen on the ground.",),
        ("{when}, {a.name} helped an old turtle cross the road.",
         '"Thank you, little one," {said} the turtle.'),
    ),
    "storm": (
        ("Suddenly, dark clouds filled the sky and thunder rumbled.",
         "{a.name} and {b.name} ran to hide {shelter}.",
         "They stayed close together until the storm was over."),
        ("{when}, a big storm came.",
         "The wind howled, and the rain fell hard on the roof.",
         '"I am scared," whispered {b.name}, and {a.name} held {b.his} {b.hand} until it '
         "passed."),
        ("One night, there was a loud storm.",
         "{a.name} could not sleep, so {a.he} counted the flashes of lightning.",
         "In the morning, the sun came out and a bright rainbow filled the sky."),
        ("The sky grew dark, and big drops of rain began to fall.",
         '"Quick, let\'s go home!" {shouted} {a.name}.',
         "They ran all the way and got home just in time."),
        ("{when}, the wind blew so hard that {a.name}'s hat flew away.",
         "{b.name} chased it and brought it back."),
        ("It rained all day, so {a.name} and {b.name} stayed inside and told stories.",),
    ),
    "race": (
        ('{when}, {b.name} said, "Let\'s have a race to {goal}!"',
         "They ran as fast as they could.",
         "{a.name} won, but they both laughed and had fun."),
        ("There was a big race {in_place}, and {a.name} wanted to win.",
         "In the middle of the race, {b.name} tripped and fell.",
         "{a.name} stopped to help {b.him}, and they crossed the finish line together."),
        ("{when}, {a.name} and {b.name} had a race across the {field}.",
         "{a.name} was fast, but {b.name} was even faster.",
         '"Good race!" {said} {a.name} with a smile.'),
        ("Everyone lined up for the big race.",
         '"Ready, set, go!" {shouted} {b.name}.',
         "{a.name} ran so fast that {a.he} felt like {a.he} {a.was} flying."),
        ('"I bet I can beat you to {goal}!" {shouted} {b.name}, and off they ran.',),
        ("{when}, {a.name} and {b.name} raced down the hill, and it was a tie.",),
    ),
    "bake": (
        ("{when}, {a.name} and {b.name} decided to bake {bake:a}.",
         "They mixed {ingredient1}, {ingredient2} and {ingredient3} in a big bowl.",
         "Soon the whole house smelled sweet and warm."),
        ("{a.name} wanted to make {bake:a} for {b.name}.",
         "{a.He} cracked the eggs and stirred the batter very carefully.",
         'When it came out of the oven, {b.name} said, "This is the best {bake} ever!"'),
        ("{when}, {a.name} baked {bake:a}.",
         "{a.He} forgot about it, and it came out a little burnt.",
         '{b.name} laughed and said, "It still tastes good to me!"'),
        ("{when}, {a.name} helped {a.his} {elder} bake {bake:a}.",
         "They poured the batter into a pan and waited by the oven.",
         "When it was ready, {a.name} shared it with {b.name}."),
        ("{when}, {a.name} and {b.name} made pancakes and put honey on top.",),
        ("{a.name} and {b.name} baked {bake:a} together.",
         '"Yum, this is so good!" {said} {b.name}.'),
    ),
    "trip": (
        ("{when}, {a.name} and {b.name} went on a trip to {trip} {vehicle}.",
         "They saw {sight1} and {sight2}.",
         "It was the best day ever!"),
        ("{a.name} packed {a.his} bag for a trip to {trip}.",
         "{a.He} took {item1}, {item2} and {item3}.",
         "On the way, {a.he} and {b.name} sang songs and looked out of the window."),
        ("{when}, {b.name} took {a.name} to see {trip}.",
         "There were so many things to see: {sight1}, {sight2} and {sight3}.",
         "{a.name} wanted to stay there forever."),
        ("They traveled {vehicle} all the way to {trip}.",
         "{a.name} pressed {a.his} nose to the window and smiled.",
         "When they got there, they had a picnic and played all afternoon."),
        ("{when}, they took a little boat across the lake and waved at the ducks.",),
        ("On the way home, {a.name} was so tired that {a.he} fell asleep.",),
    ),
    "fight": (
        ("{a.name} and {b.name} both wanted the same {toy}, and they had a big fight.",
         'Later, {a.name} felt bad and said, "I am sorry. You can have the first turn."',
         "{b.name} smiled, and they took turns all day."),
        ("{when}, {b.name} said something unkind, and {a.name} walked away feeling {bad}.",
         'After a while, {b.name} came over and whispered, "I am sorry. I did not mean it."',
         "{a.name} gave {b.him} a big hug, and they were friends again."),
        ("{a.name} knocked over the tower that {b.name} had built.",
         "{b.name} was very cross and would not talk to {a.him}.",
         "So {a.name} helped to build a new tower, even taller than before, and {b.name} "
         "forgave {a.him}."),
        ("{a.name} and {b.name} could not agree on what to play.",
         '"Let\'s play {game1}!" {said} {a.name}, but {b.name} wanted to play {game2}.',
         "In the end, they played {game1} first and {game2} after, and both were happy."),
        ("{a.name} and {b.name} argued about who was faster.",
         "Then they laughed, because it did not really matter."),
        ("{b.name} was cross because {a.name} took the last {snack}.",
         '"I am sorry," {said} {a.name}, and {a.he} shared it.'),
    ),
    "learn": (
        ("{a.name} wanted to learn how to {skill}.",
         "At first it was hard, and {a.he} made many mistakes.",
         "But {a.he} kept trying, and at last {a.he} could do it!"),
        ("{when}, {b.name} showed {a.name} how to {skill}.",
         '"Go slowly and do not give up," {said} {b.name}.',
         "Soon {a.name} could {skill} all by {a.himself}."),
        ('{when}, {a.name} asked, "{question}"',
         "{b.name} told {a.him} all about it, and {a.name} listened with big eyes."),
        ("At school, the teacher showed everyone how to {skill}.",
         "{a.name} listened carefully and tried {a.his} best.",
         "By the end of the day, {a.he} {a.was} very proud of {a.himself}."),
        ("{a.name} practiced every day until {a.he} could {skill} very well.",),
        ('{a.name} counted the {fruit} in the basket: "One, two, three, four!"',),
    ),
    "share": (
        ("At lunch, {b.name} had nothing to eat.",
         "{a.name} broke {a.his} {snack} in half and gave one piece to {b.name}.",
         '"Sharing makes it taste even better," {said} {a.name}.'),
        ("{when}, {a.name} had {number} {fruit} and {b.name} had none.",
         "{a.He} gave half of them to {b.name} with a big smile."),
        ("{b.name} wanted to play with {a.name}'s new {toy}.",
         "At first {a.name} did not want to share.",
         "Then {a.he} remembered how nice it feels to share, and they played with it "
         "together."),
        ("{when}, {a.name} found a bush full of {fruit}.",
         "Instead of eating them all, {a.he} saved some for {b.name}.",
         "{b.name} was so {good} that {b.he} did a little dance."),
        ("{a.name} shared {a.his} umbrella with {b.name} on the way home.",),
        ("At the playground, {a.name} let {b.name} have the first turn on the swing.",),
    ),
    "discover": (
        ("While they were walking {in_place}, {a.name} found {treasure:a}.",
         '"What is this?" asked {b.name}.',
         "They took it home and showed it to everyone."),
        ("{when}, {a.name} and {b.name} found a little path they had never seen before.",
         "They followed it past {sight1} and {sight2}.",
         "At the end of the path, they found a secret garden full of flowers."),
        ("Behind a big rock, {a.name} found a small door.",
         "{a.He} knocked, and a tiny {critter} opened it.",
         '"Welcome!" said the {critter}, and it invited them in for tea.'),
        ("That night, {a.name} looked up at the sky and saw {night_sight}.",
         '"Look, {b.name}! Make a wish!" {a.he} whispered.'),
        ("{when}, {a.name} found a tiny nest with {number} blue eggs in it.",),
        ("{a.name} found {treasure:a} {spot1}.",
         '"Wow, what a find!" {said} {b.name}.'),
    ),
    "play": (
        ("{when}, {a.name} and {b.name} played {game} {in_place}.",
         "They laughed and ran until the sun went down."),
        ("{when}, they built a big castle out of {material}.",
         "{a.name} put a little flag on the top.",
         '"It is the best castle in the world!" {shouted} {b.name}.'),
        ("{when}, they jumped in puddles and splashed each other.",
         "{a.name} got mud all over {a.his} {clothes}.",
         "They laughed so hard that they fell down in the grass."),
        ("{when}, {b.name} found a big empty box.",
         '"Let\'s pretend it is {pretend:a}!" {b.he} said.',
         "They sailed and flew all over the world without ever leaving the room."),
        ("{when}, {a.name} and {b.name} played {game} until it was time for dinner.",),
        ("{a.name} pushed {b.name} on the swing, higher and higher.",),
    ),
    "surprise": (
        ("It was {b.name}'s birthday.",
         "{a.name} made {gift:a} just for {b.him}.",
         'When {b.name} saw it, {b.he} {shouted}, "What a wonderful surprise!"'),
        ("{a.name} and {b.name} planned a surprise party for {someone}.",
         "They hung up {decoration} and hid behind the sofa.",
         '"Surprise!" they shouted, and everyone laughed and clapped.'),
        ("When {a.name} came home, there was a box on the table.",
         "Inside was {toy:a}!",
         "It was a gift from {b.name}, and {a.name} could not stop smiling."),
        ("{b.name} gave {a.name} {gift:a}, and {a.name} gave {b.name} a big hug.",),
    ),
    "garden": (
        ("{when}, {a.name} and {b.name} planted {plant} seeds in the garden.",
         "Every day they gave them water and sang to them.",
         "After a few weeks, little green {plant} plants came up."),
        ("{when}, {a.name} saw that the flowers {in_place} were dry and droopy.",
         "{a.He} filled a watering can and gave each one a drink.",
         "The next day, the flowers stood up tall and bright."),
        ("In the garden, {a.name} found a tiny {bug} on a leaf.",
         '"Hello, little {bug}," {a.he} whispered.',
         "The {bug} crawled onto {a.his} {a.hand} and tickled {a.him}."),
        ("{a.name} picked a bunch of flowers and gave them to {b.name}.",),
        ("{when}, they watched a fat {bug} climb slowly up a stem.",),
    ),
    "brave": (
        ("That night, {a.name} heard a strange noise outside.",
         "{a.He} {a.was} scared, but {a.he} took a deep breath and looked out.",
         "It was only {b.name}, who had come to say goodnight!"),
        ("{a.name} was afraid of the dark.",
         '{b.name} gave {a.him} a little lamp and said, "Now you can see that nothing is '
         'there."',
         "After that, {a.name} was not scared anymore."),
        ("{when}, {a.name} had to cross an old wooden bridge.",
         "{a.His} legs were shaking, but {b.name} held {a.his} {a.hand}.",
         "Step by step, they crossed it together."),
        ("Something rustled in the bushes, and {a.name} jumped.",
         '"Who is there?" {a.he} asked in a small voice.',
         "Out came {critter:a}, which was even more scared than {a.he} {a.was}!"),
        ("{a.name} was scared of the big slide, but {a.he} went down anyway and loved it.",),
        ("{when}, {a.name} said hello to a new kid, even though {a.he} felt shy.",),
    ),
}
THEMES = tuple(EVENTS)

# theme -> lessons; the ending states one of them for a theme used in the story
MORALS = {
    "lost": (
        "it is good to keep your things in a safe place",
        "friends help you find what you have lost",
        "looking carefully is better than worrying",
    ),
    "help": (
        "helping others makes everyone happy",
        "a kind act is never too small",
        "good friends help each other",
    ),
    "storm": (
        "storms do not last forever",
        "scary things are less scary when you are together",
        "after the rain, the sun always comes back",
    ),
    "race": (
        "having fun is more important than winning",
        "being kind is better than being first",
        "trying your best is what really matters",
    ),
    "bake": (
        "food tastes better when you share it",
        "good things take time",
        "even mistakes can turn out sweet",
    ),
    "trip": (
        "the world is full of wonderful things",
        "every trip is better with a friend",
    ),
    "fight": (
        "saying sorry can mend a friendship",
        "friends can disagree and still care for each other",
        "taking turns is fair",
    ),
    "learn": (
        "practice makes things easier",
        "it is okay to make mistakes when you learn",
        "asking questions helps you learn",
    ),
    "share": (
        "sharing makes everyone happy",
        "giving feels as good as getting",
    ),
    "discover": (
        "curious minds find wonderful things",
        "there are surprises in every little corner",
    ),
    "play": (
        "play is better with friends",
        "a little imagination goes a long way",
    ),
    "surprise": (
        "small gifts can bring big smiles",
        "the best gifts come from the heart",
    ),
    "garden": (
        "good things grow when you take care of them",
        "even small creatures deserve kindness",
    ),
    "brave": (
        "being brave means trying even when you are scared",
        "things are often less scary than they seem",
    ),
}

CLOSINGS = (
    "From that day on, {a.name} and {b.name} were the best of friends.",
    "That night, {a.name} went to bed with a big smile.",
    "When the sun went down, {a.name} and {b.name} walked home, tired and happy.",
    "It had been a long day, and {a.name} fell asleep dreaming of new adventures.",
    '{a.name} hugged {b.name} and said, "This was the best day ever!"',
    "And they all lived happily ever after.",
    "Everyone cheered, and {a.name} felt warm inside.",
    "{a.name} and {b.name} could not wait for tomorrow.",
    '"Let\'s do this again soon," {said} {b.name}, and {a.name} nodded.',
)
MORAL_LINES = (
    "{a.name} learned that {moral}.",
    "That day, {a.name} learned that {moral}.",
    "{a.name} and {b.name} learned that {moral}.",
    "The lesson of the story is that {moral}.",
    "And {a.name} never forgot that {moral}.",
    "Now {a.he} knew that {moral}.",
    "{b.name} smiled, because {b.he} knew that {moral}.",
)

# ---------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------


def _with_article(phrase: str) -> str:
    """Prefix "a" or "an"; the word lists keep the first letter a reliable guide."""
    return ("an " if phrase[0] in "aeiouAEIOU" else "a ") + phrase


@dataclass(frozen=True)
class _Character:
    """A story character; templates read its fields to stay grammatical."""

    name: str
    kind: str
    kind_desc: str  # "a little fox"
    desc: str  # "a little fox named Pip"
    he: str
    him: str
    his: str
    himself: str
    was: str
    hand: str

    @property
    def He(self) -> str:
        return self.he.capitalize()

    @property
    def His(self) -> str:
        return self.his.capitalize()


def _make_character(rng: random.Random, avoid_name: str = "") -> _Character:
    """Draw a child, an animal or a grown-up role, with a matching name and pronoun."""
    roll = rng.random()
    if roll < 0.35:
        kind, pronoun = rng.choice(CHILDREN)
        adjective, hand = rng.choice(CHILD_ADJECTIVES), "hand"
        names = NAMES_FOR[pronoun]
    elif roll < 0.8:
        kind, hand = rng.choice(ANIMALS)
        adjective, pronoun = rng.choice(ANIMAL_ADJECTIVES), rng.choice(ANY_PRONOUN)
        names = PET_NAMES if rng.random() < 0.7 else NAMES_FOR[pronoun]
    else:
        kind, pronoun, hand = rng.choice(ROLES)
        pronoun = pronoun or rng.choice(ANY_PRONOUN)
        adjective, names = rng.choice(ROLE_ADJECTIVES), NAMES_FOR[pronoun]
    name = rng.choice(names)
    while name == avoid_name:
        name = rng.choice(names)
    kind_desc = _with_article(f"{adjective} {kind}")
    desc = f"{kind_desc} {rng.choice(('named', 'called'))} {name}"
    return _Character(name, kind, kind_desc, desc, *PRONOUNS[pronoun], hand)


class _Word(str):
    """A slot value; the format spec ``a`` prefixes the right article."""

    __slots__ = ()

    def __format__(self, spec: str) -> str:
        return _with_article(self) if spec == "a" else str.__format__(self, spec)


class _Slots(dict):
    """Slot values for one group of templates, drawing missing words on first use."""

    def __init__(self, rng: random.Random, fixed: dict[str, object]) -> None:
        super().__init__(fixed)
        self._rng = rng

    def __missing__(self, key: str) -> _Word:
        base = key.rstrip("0123456789")
        taken = [value for slot, value in self.items() if slot.rstrip("0123456789") == base]
        value = self._draw(base)
        while value in taken:
            value = self._draw(base)
        word = self[key] = _Word(value)
        return word

    def _draw(self, base: str) -> str:
        if base == "toy":
            noun = self._rng.choice(TOY_NOUNS)
            if self._rng.random() < 0.6:
                return f"{self._rng.choice(TOY_ADJECTIVES)} {noun}"
            return noun
        return self._rng.choice(WORDS[base])


def _capitalize(sentence: str) -> str:
    """Uppercase the first letter, looking past an opening quotation mark."""
    i = 1 if sentence[0] == '"' else 0
    return sentence[:i] + sentence[i].upper() + sentence[i + 1 :]


def _render(rng: random.Random, templates: tuple[str, ...], fixed: dict[str, object]) -> list[str]:
    """Fill one group of templates that share their slot words."""
    slots = _Slots(rng, fixed)
    return [_capitalize(template.format_map(slots)) for template in templates]


def generate_story(rng: random.Random) -> str:
    """Write one story using only ``rng``, so callers control reproducibility."""
    hero = _make_character(rng)
    friend = _make_character(rng, avoid_name=hero.name)
    preposition, place = rng.choice(PLACES)
    fixed: dict[str, object] = {
        "a": hero,
        "b": friend,
        "in_place": f"{preposition} the {place}",
        "to_place": f"to the {place}",
    }

    opening = rng.choice(OPENINGS)
    if rng.random() < 0.5:
        opening += (rng.choice(SETTINGS),)
    themes = rng.sample(THEMES, rng.randint(MIN_EVENTS, MAX_EVENTS))
    events = [rng.choice(EVENTS[theme]) for theme in themes]
    roll = rng.random()
    if roll < 0.25:
        ending: tuple[str, ...] = (rng.choice(CLOSINGS),)
    elif roll < 0.5:
        ending = (rng.choice(MORAL_LINES),)
    else:
        ending = (rng.choice(CLOSINGS), rng.choice(MORAL_LINES))

    def length() -> int:
        return len(opening) + sum(map(len, events)) + len(ending)

    while length() > MAX_SENTENCES and len(events) > MIN_EVENTS:
        events.pop()
        themes.pop()
    fixed["moral"] = rng.choice(MORALS[rng.choice(themes)])

    beginning = _render(rng, opening, fixed)
    middle = [line for event in events for line in _render(rng, event, fixed)]
    end = _render(rng, ending, fixed)
    layout = rng.random()
    if layout < 0.4:
        paragraphs = [beginning + middle + end]
    elif layout < 0.7:
        paragraphs = [beginning, middle + end]
    else:
        paragraphs = [beginning, middle, end]
    return "\n".join(" ".join(sentences) for sentences in paragraphs)


def iter_stories(seed: int = 0) -> Iterator[str]:
    """Yield stories forever from one seeded stream, for corpora of any size."""
    rng = random.Random(seed)
    while True:
        yield generate_story(rng)


def generate_stories(num_stories: int, seed: int = 0) -> list[str]:
    """Return the first ``num_stories`` stories of the stream for ``seed``."""
    if num_stories < 0:
        raise ValueError(f"num_stories must be >= 0, got {num_stories}")
    stream = iter_stories(seed)
    return [next(stream) for _ in range(num_stories)]


def build_corpus(num_chars: int, seed: int = 0) -> list[str]:
    """Return stories from the stream for ``seed`` until their total length reaches
    ``num_chars``, so a caller can ask for a corpus by size rather than by count."""
    if num_chars < 0:
        raise ValueError(f"num_chars must be >= 0, got {num_chars}")
    stories: list[str] = []
    total = 0
    stream = iter_stories(seed)
    while total < num_chars:
        story = next(stream)
        stories.append(story)
        total += len(story)
    return stories
